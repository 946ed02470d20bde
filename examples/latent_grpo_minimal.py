"""Latent GRPO in one file: a language model that thinks K continuous thoughts before it answers, trained
by GRPO with the gradient flowing back through its chain of thoughts, truncated to a window.

    python examples/latent_grpo_minimal.py                  # a tiny model built here, 3-digit addition
    python examples/latent_grpo_minimal.py --model DIR      # a Hugging Face causal LM folder with <thought>

Read it top to bottom, as one step runs:

1. The thought. After the prompt come K thought positions. Each reads the reserved <thought> token
   plus a gated thought made from the final hidden state h of the position before it:
       f = P(h / rms(h) * rms(E))         RMS-matched to the token embeddings E, P a linear map (= I at start)
       e = E[<thought>] + tanh(lambda) * f,   lambda = 0 at start: the policy is then the plain model
2. Rollout: the prompt in one pass, the K thoughts one at a time over the KV cache, then the answer
   tokens sampled at temperature 1. Every fed thought and sampling log-prob is recorded.
3. Reward and group-relative advantages (GRPO): G answers a prompt, A = (r - mean) / (std + 1e-4).
4. Recompute with gradient, truncated BPTT with window k: one pass with the recorded thoughts as
   constants up to the last k thought positions; those are recomputed one at a time, each thought a
   differentiable function of the hidden state before it; the answer is read over their cache. No
   gradient path crosses more than k thought edges. (Detaching the fed vector alone would not
   truncate: gradient would still reach older thoughts through the KV entries of later positions.)
5. The clipped surrogate, token-level (DAPO) aggregation, one optimizer step with clipped gradients.

How it departs from neuralese's trainer (`neuralese train`, neuralese.trainer): one process and one
micro-batch; latent mode with hidden-state thoughts only (no sampled thoughts, no other modes); no
KL term, no PPO, no curriculum, no checkpoints. tests/test_example.py holds one of its steps to the
same update as `Trainer.step` with the same seed and settings.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from neuralese.envs import env_texts, make_env
from neuralese.models import CACHE, load_model  # CACHE: the KV-cache argument's name in this transformers


@dataclass
class Args:
    model: str | None = None
    """A Hugging Face causal LM folder with a <thought> token; None builds and saves a tiny one here."""
    seed: int = 0
    """Seeds the data order (one pass over a seeded permutation) and the sampling stream."""
    steps: int = 100
    """RL steps."""
    prompts_per_step: int = 8
    """Problems a step; each is answered `samples_per_prompt` times (a GRPO group)."""
    samples_per_prompt: int = 8
    """G: answers a problem, the group the advantages are relative to."""
    num_thoughts: int = 4
    """K: thought positions between the prompt and the answer."""
    tbptt_window: int = 2
    """k: the last k thought edges carry gradient (0: every thought a recorded constant; K: all)."""
    max_new_tokens: int = 6
    """Answer tokens at most."""
    learning_rate: float = 1e-4
    """The language model's learning rate (AdamW)."""
    feedback_learning_rate: float = 1e-2
    """The feedback adapter's (P and the gate): it starts at the identity and a closed gate."""
    epsilon: float = 0.2
    """The ratio clip: r in [1 - eps, 1 + eps]."""
    max_grad_norm: float = 1.0
    """Gradient clipping over every trained weight."""
    train_size: int = 2000
    """Problems in the train split."""


def digit_share(prompts, completions, answer, **columns):
    """Partial credit (TRL's reward contract): the share of the answer's digits written in place.

    >>> digit_share(["1+2="], ["3"], answer=["3"]), digit_share(["9+9="], ["19"], answer=["18"])
    ([1.0], [0.5])
    """
    return [
        sum(a == c for a, c in zip(str(t), str(o).strip(), strict=False)) / len(str(t))
        for o, t in zip(completions, answer, strict=True)
    ]


# ----------------------------------------------------------------------------- 1. the thought


class Feedback(nn.Module):
    """f = P(h / rms(h) * rms(E)) and the gate tanh(lambda), float32 whatever the model's dtype."""

    def __init__(self, hidden_size: int, embed_rms: float):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(hidden_size))
            self.proj.bias.zero_()
        self.gate_logit = nn.Parameter(torch.zeros(hidden_size))  # lambda = 0: the gate starts closed
        self.register_buffer("target_rms", torch.tensor(float(embed_rms)))

    def thought(self, h: torch.Tensor) -> torch.Tensor:
        """[B, D] final hidden state -> [B, D] thought."""
        h = h.float()
        return self.proj(h / h.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * self.target_rms)

    def combine(self, token_embeds: torch.Tensor, thought: torch.Tensor) -> torch.Tensor:
        """The input of a thought position: E[<thought>] + tanh(lambda) * f."""
        return (token_embeds.float() + torch.tanh(self.gate_logit) * thought).to(token_embeds.dtype)


def forward(model, embeds, mask, positions, cache, keep: int = 0):
    """One causal-LM call on input embeddings over (and into) the KV cache: logits (of the last `keep`
    positions; 0: all) and final hidden states."""
    out = model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        **{CACHE: cache},
        use_cache=True,
        output_hidden_states=True,
        logits_to_keep=keep,
    )
    return out.logits, out.hidden_states[-1]


# ----------------------------------------------------------------------------- 2. rollout


@torch.no_grad()
def rollout(model, tok, fb: Feedback, prompts: list[str], args: Args, generator: torch.Generator) -> dict:
    """Thoughts, then answers, for left-padded prompts. Every tensor is [B, L], prompt positions first."""
    E = model.get_input_embeddings()
    enc = tok(prompts, return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: a padded prompt reads like the plain one
    cache = DynamicCache(config=model.config)
    logits, hidden = forward(model, E(ids), mask, positions, cache, keep=1)
    thought_id = tok.convert_tokens_to_ids("<thought>")
    eos = torch.tensor(sorted({tok.eos_token_id, *_ids(model.generation_config.eos_token_id)} - {None}))
    bsz, K = ids.shape[0], args.num_thoughts
    alive = torch.ones(bsz, dtype=torch.bool)
    cols = {k: [] for k in ("ids", "mask", "action", "fb", "logp", "feedback")}
    for i in range(K + args.max_new_tokens):
        thinking, last = i < K, i == K + args.max_new_tokens - 1
        if thinking:  # the <thought> token, with the thought from the position before it
            token, logp, action = (
                torch.full((bsz,), thought_id),
                torch.zeros(bsz),
                torch.zeros(bsz, dtype=torch.bool),
            )
        else:  # an answer token, sampled at temperature 1
            logprobs = torch.log_softmax(logits[:, -1].float(), dim=-1)
            token = torch.multinomial(logprobs.exp(), 1, generator=generator).squeeze(-1)
            token = torch.where(alive, token, tok.pad_token_id)
            logp, action = logprobs.gather(-1, token[:, None]).squeeze(-1), alive.clone()
        feeds = torch.full((bsz,), thinking and not last)  # no thought into the last position: unread
        f = fb.thought(hidden[:, -1]) if feeds.any() else torch.zeros_like(hidden[:, -1], dtype=torch.float32)
        embeds = E(token[:, None])
        embeds = torch.where(feeds[:, None, None], fb.combine(embeds, f[:, None]), embeds)
        for key, value in zip(
            cols, (token, alive.long(), action, feeds, torch.where(action, logp, 0.0), f), strict=True
        ):
            cols[key].append(value)
        alive = alive & ~(action & torch.isin(token, eos))
        if not alive.any() or last:
            break
        mask = torch.cat([mask, cols["mask"][-1][:, None]], dim=1)
        logits, hidden = forward(model, embeds, mask, positions[:, -1:] + len(cols["ids"]), cache, keep=1)
    G, P = len(cols["ids"]), ids.shape[1]
    pad = lambda t, like: torch.cat([torch.zeros_like(like[:, :P]), t], dim=1)  # noqa: E731
    gen = {k: torch.stack(v, dim=1) for k, v in cols.items()}
    return {
        "input_ids": torch.cat([ids, gen["ids"]], 1),
        "attention_mask": torch.cat([enc["attention_mask"], gen["mask"]], 1),
        "position_ids": torch.cat([positions, positions[:, -1:] + 1 + torch.arange(G)], 1),
        "action_mask": pad(gen["action"], ids.bool()),
        "feedback_mask": pad(gen["fb"], ids.bool()),
        "logprobs": pad(gen["logp"].double(), ids.double()),
        "feedback": pad(gen["feedback"], torch.zeros(bsz, P, f.shape[-1])),
        "prompt_length": P,
    }


def _ids(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ----------------------------------------------------------------------------- 3. reward and advantages


def advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] rewards in contiguous groups of G -> [N] (r - mean_group) / (std_group + 1e-4)."""
    grouped = rewards.view(-1, group_size)
    return ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).view(-1)


# ----------------------------------------------------------------------------- 4. recompute, TBPTT window k


def recompute(model, fb: Feedback, ro: dict, args: Args) -> torch.Tensor:
    """[B, L] log-probs of the sampled answer tokens, with gradient through the last k thought edges."""
    E, P, K = model.get_input_embeddings(), ro["prompt_length"], args.num_thoughts
    ids, mask, pos = ro["input_ids"], ro["attention_mask"], ro["position_ids"]
    embeds = E(ids)
    fed = ro["feedback_mask"][..., None]
    x = torch.where(fed, fb.combine(embeds, ro["feedback"]), embeds)  # the recorded thoughts, as constants
    start = P + K - min(args.tbptt_window, K)  # the first live thought position
    cache = DynamicCache(config=model.config)
    logits, hidden = forward(model, x[:, :start], mask[:, :start], pos[:, :start], cache, keep=1)
    for t in range(start, P + K):  # live: each thought a function of the hidden state before it
        h = hidden[:, -1]  # the first live thought starts from a state made of recorded constants
        x_t = torch.where(fed[:, t], fb.combine(embeds[:, t], fb.thought(h)), x[:, t])
        logits, hidden = forward(model, x_t[:, None], mask[:, : t + 1], pos[:, t : t + 1], cache)
    answer_logits, _ = forward(model, x[:, P + K :], mask, pos[:, P + K :], cache)  # reads the live KV
    logits = torch.cat([logits[:, -1:], answer_logits[:, :-1]], dim=1)  # scores the tokens at P+K .. L-1
    logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, P + K :, None]).squeeze(-1)
    return torch.cat([torch.zeros_like(ids[:, : P + K], dtype=logp.dtype), logp], dim=1) * ro["action_mask"]


# ----------------------------------------------------------------------------- 5. loss and update


def grpo_loss(logp: torch.Tensor, ro: dict, adv: torch.Tensor, eps: float) -> torch.Tensor:
    """The clipped surrogate per answer token, averaged over every answer token of the step (DAPO)."""
    mask = ro["action_mask"]
    ratio = torch.exp(logp.double() - ro["logprobs"])  # 1 in value on the first update; its gradient is not 0
    per_token = -torch.min(ratio * adv[:, None], ratio.clamp(1 - eps, 1 + eps) * adv[:, None])
    return per_token[mask].sum() / mask.sum().clamp(min=1)


def train_step(model, tok, fb, optimizer, env, rows, args: Args, generator) -> dict:
    """One GRPO step on the problems `rows`: rollout, reward, advantage, recompute, loss, update."""
    G = args.samples_per_prompt
    prompts = [p for p in rows["prompt"] for _ in range(G)]
    model.eval()
    ro = rollout(model, tok, fb, prompts, args, generator)
    model.train()
    completions = tok.batch_decode(
        [r[m].tolist() for r, m in zip(ro["input_ids"], ro["action_mask"], strict=True)],
        skip_special_tokens=True,
    )
    columns = {k: [v for v in vals for _ in range(G)] for k, vals in rows.items() if k != "prompt"}
    rewards = torch.tensor(digit_share(prompts, completions, **columns), dtype=torch.float64)
    adv = advantages(rewards, G)
    optimizer.zero_grad(set_to_none=True)
    loss = grpo_loss(recompute(model, fb, ro, args), ro, adv, args.epsilon)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
    optimizer.step()
    correct = torch.tensor(env.check(prompts, completions, **columns)) >= 1
    return {
        "reward": rewards.mean().item(),
        "accuracy": correct.float().mean().item(),
        "loss": loss.item(),
        "grad_norm": grad_norm.item(),
        "gate": torch.tanh(fb.gate_logit).abs().mean().item(),
    }


def setup(args: Args, env):
    """The model, its tokenizer, a fresh feedback adapter and the optimizer over both."""
    model, tok = load_model(args.model)
    E = model.get_input_embeddings().weight
    fb = Feedback(model.config.hidden_size, E.detach().float().pow(2).mean().sqrt().item())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": args.learning_rate},
            {"params": list(fb.parameters()), "lr": args.feedback_learning_rate},
        ],
        weight_decay=0.0,
    )
    return model, tok, fb, optimizer


def tiny_model(env, folder: str) -> str:
    """A tiny Llama with a tokenizer made from the task's text (a real run starts from a trained model)."""
    from neuralese.config import TinyModelConfig
    from neuralese.tiny import build_tiny_model, build_tokenizer, save_tiny

    tok = build_tokenizer(env_texts(env.dataset("train", 500, seed=0)))
    cfg = TinyModelConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, max_positions=64)
    return str(save_tiny(build_tiny_model(tok, cfg), tok, folder))


def main(args: Args) -> None:
    env = make_env("addition", {"digits": 3})
    with tempfile.TemporaryDirectory() as tmp:
        args.model = args.model or tiny_model(env, tmp)
        model, tok, fb, optimizer = setup(args, env)
        generator = torch.Generator().manual_seed(args.seed * 1000)
        rows = env.dataset("train", args.train_size, args.seed)
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed)).tolist()
        for step in range(args.steps):
            take = order[step * args.prompts_per_step : (step + 1) * args.prompts_per_step]
            m = train_step(model, tok, fb, optimizer, env, rows.select(take).to_dict(), args, generator)
            print(f"step {step + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in vars(Args()).items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=type(default) if default is not None else str, default=default
        )
    main(Args(**vars(parser.parse_args())))
