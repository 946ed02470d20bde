"""Batched neuralese rollouts with a KV cache, and the `Rollout` record they produce.

One step of the loop, for every sequence of the batch at once:

    latent mode, step < K:  token = <thought> (forced), input = E[token] + g * f(h_prev)
    otherwise:              token ~ softmax(logits / T), input = E[token] (+ g * f(h_prev) in hybrid mode)

The record keeps everything the loss needs to recompute exactly what was sampled:
token ids, masks, the sampling log-probs, the fed-back vectors and the noise behind them.
All tensors span the whole sequence (prompt then generated positions) so that position
t of every tensor refers to the same input position.

Left padding: prompts are padded on the left and position ids are given explicitly
(cumulative sum of the mask), so a padded prompt behaves like the unpadded one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from transformers import DynamicCache

from rl.feedback import Draw
from rl.policy import NeuralesePolicy


@dataclass
class Rollout:
    """Sampled sequences and what the recompute needs. B sequences, L = P + G positions."""

    input_ids: torch.Tensor  # [B, L] long: prompt (left-padded), then thought and answer tokens
    attention_mask: torch.Tensor  # [B, L] long: 1 on real positions
    position_ids: torch.Tensor  # [B, L] long
    action_mask: torch.Tensor  # [B, L] bool: the token at t was sampled (its log-prob counts)
    feedback_mask: torch.Tensor  # [B, L] bool: the input at t received feedback from position t-1
    # [B, L, D] float32: fed-back vector (noise included) at feedback positions, else 0
    feedback: torch.Tensor
    # [B, L] float64: sampling log-prob (token + sampled thought) at loss positions, else 0. float64
    # because a thought's density sums D or V terms: its float32 value would blur the ratio.
    logprobs: torch.Tensor
    prompt_length: int  # P
    temperature: float  # log-probs are of softmax(logits / temperature); 1.0 for greedy
    sampler: str = "none"  # what made the thoughts random (FeedbackAdapter.sampler)
    # The thoughts' random draws, [B, L, ...] per tensor (zeros where no thought was drawn)
    draw: Draw = field(default_factory=Draw)

    @property
    def loss_mask(self) -> torch.Tensor:
        """[B, L] bool: positions whose log-prob is part of the policy's log-probability."""
        if self.sampler != "none":
            return self.action_mask | self.feedback_mask
        return self.action_mask

    @property
    def num_thoughts(self) -> torch.Tensor:
        """[B] long: thought positions (feedback positions that sampled no token)."""
        return (self.feedback_mask & ~self.action_mask)[:, self.prompt_length :].sum(-1)

    @property
    def generated_positions(self) -> torch.Tensor:
        """[B] long: thought and answer positions actually used (pads after eos excluded)."""
        return self.attention_mask[:, self.prompt_length :].sum(-1)

    def completion_ids(self) -> list[list[int]]:
        """The sampled answer tokens of each sequence (no thoughts, no padding), eos included."""
        return [row[mask].tolist() for row, mask in zip(self.input_ids, self.action_mask)]

    def map(self, fn) -> Rollout:
        """The record with `fn` applied to every tensor (each has the batch first, positions second)."""
        tensors = {f.name: fn(getattr(self, f.name)) for f in fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}  # fmt: skip
        return replace(self, **tensors, draw=self.draw.map(fn))

    def select(self, index: torch.Tensor | slice) -> Rollout:
        """The rows `index` (for micro-batches)."""
        return self.map(lambda t: t[index])

    def to(self, device: torch.device | str) -> Rollout:
        return self.map(lambda t: t.to(device))


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] attention mask -> [B, T] positions counting only real tokens (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """Sample one token per row; returns (tokens [B], log-probs [B]) at the sampling temperature."""
    if temperature == 0:
        logp = torch.log_softmax(logits.float(), dim=-1)  # [B, V]
        tokens = logp.argmax(-1)
    else:
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [B, V]
        tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


@torch.no_grad()
def generate_rollout(
    policy: NeuralesePolicy,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    ignore_eos: bool = False,
    thoughts: torch.Tensor | None = None,
) -> Rollout:
    """Sample thoughts and answers for a batch of left-padded prompts.

    prompt_ids, prompt_mask: [B, P]. Greedy when `temperature` is 0. Latent mode runs
    `num_thoughts` thought positions before the at most `max_new_tokens` answer tokens.
    `ignore_eos` keeps sampling after eos (benchmarks that need a fixed length).
    `thoughts` [B, S, D]: feed these vectors at the first S feedback steps instead of the policy's
    own (the `shuffled` control gives each prompt another prompt's thoughts); they are drawn by
    nobody, so they add no log-prob.
    """
    cfg, device = policy.config, prompt_ids.device
    bsz, plen = prompt_ids.shape
    latent = cfg.mode == "latent"
    hybrid = cfg.mode == "hybrid"
    num_thoughts = cfg.num_thoughts if latent and policy.feedback_on else 0
    total = num_thoughts + max_new_tokens
    eos = policy.eos_token_ids(device)
    sampler = policy.adapter.sampler if policy.feedback_on else "none"

    mask = prompt_mask.long()
    positions = position_ids_from_mask(mask)
    cache = DynamicCache(config=policy.model.config)
    out = policy.forward(policy.embed(prompt_ids), mask, positions, cache=cache, keep=1)
    logits, src = out.logits[:, -1], policy.thought_source(out, -1)

    steps: list[dict[str, torch.Tensor]] = []
    finished = torch.zeros(bsz, dtype=torch.bool, device=device)
    next_pos = positions[:, -1] + 1
    for step in range(total):
        thinking = step < num_thoughts
        alive = ~finished
        if thinking:
            tokens = torch.full((bsz,), policy.thought_token_id, device=device)
            logp = torch.zeros(bsz, device=device, dtype=torch.float64)
            action = torch.zeros(bsz, dtype=torch.bool, device=device)
        else:
            tokens, logp = _sample(logits, temperature, generator)
            tokens = torch.where(alive, tokens, policy.pad_token_id)
            logp, action = logp.double(), alive.clone()
        ends = action & torch.isin(tokens, eos) & (not ignore_eos)
        last = step == total - 1
        # Feedback into an input whose output is never used (eos, or the last position) would be
        # noise without effect: leave it out.
        fb = (
            alive & ~ends
            if policy.feedback_on and (thinking or hybrid) and not last
            else torch.zeros_like(alive)
        )
        embeds = policy.embed(tokens[:, None])  # [B, 1, D]
        record = {"ids": tokens, "mask": alive.long(), "action": action, "fb": fb}
        if fb.any():
            vec, thought_logp, draw = _thought(policy, src, generator, thoughts, len(steps), fb)
            logp = logp + torch.where(fb, thought_logp, 0.0)
            embeds = torch.where(fb[:, None, None], policy.adapter.combine(embeds, vec[:, None]), embeds)
            record.update(vec=vec, **{f"draw.{k}": v for k, v in draw.items()})
        record["logp"] = torch.where(action | (fb & (sampler != "none")), logp, 0.0)
        steps.append(record)
        finished = finished | ends
        if finished.all() or last:
            break
        mask = torch.cat([mask, alive.long()[:, None]], dim=1)
        out = policy.forward(embeds, mask, next_pos[:, None], cache=cache, keep=1)
        logits, src = out.logits[:, -1], policy.thought_source(out, -1)
        next_pos = next_pos + 1
    return _record(policy, prompt_ids, prompt_mask, positions, steps, temperature, sampler)


def _thought(policy: NeuralesePolicy, src, generator, forced: torch.Tensor | None, step: int, fb: torch.Tensor):
    """One step's thoughts [B, D], their log-prob [B] and draw tensors, masked to feedback rows `fb`."""
    if forced is not None and step < forced.shape[1]:
        vec = forced[:, step].float()
        return vec, torch.zeros(vec.shape[0], dtype=torch.float64, device=vec.device), {}
    vec, logp, draw = policy.adapter.sample(src, policy.embedding_table, generator)
    vec = torch.where(fb[:, None], vec, 0.0)
    keep = lambda t: torch.where(fb.view(-1, *[1] * (t.dim() - 1)), t, torch.zeros_like(t))  # noqa: E731
    return vec, logp, {k: keep(v) for k, v in vars(draw).items() if v is not None}


def _record(policy, prompt_ids, prompt_mask, positions, steps, temperature, sampler) -> Rollout:
    """The Rollout of a finished loop: prompt columns, then one column per step."""
    bsz, plen = prompt_ids.shape
    device = prompt_ids.device

    def column(key: str, like: torch.Tensor | None = None) -> torch.Tensor:
        """Step values of `key` stacked along positions, zeros at steps that lack it, prompt zeros first."""
        ref = like if like is not None else next(s[key] for s in steps if key in s)
        vals = [s[key] if key in s else torch.zeros_like(ref) for s in steps]
        gen = torch.stack(vals, dim=1)  # [B, G, ...]
        return torch.cat([gen.new_zeros(bsz, plen, *gen.shape[2:]), gen], dim=1)

    vec_like = torch.zeros(bsz, policy.hidden_size, device=device)
    draw_keys = {k.split(".", 1)[1] for s in steps for k in s if k.startswith("draw.")}
    draw = Draw(**{k: column(f"draw.{k}") for k in draw_keys})
    gen_len = len(steps)
    return Rollout(
        input_ids=torch.cat([prompt_ids, torch.stack([s["ids"] for s in steps], 1)], dim=1),
        attention_mask=torch.cat([prompt_mask.long(), torch.stack([s["mask"] for s in steps], 1)], dim=1),
        position_ids=torch.cat(
            [positions, positions[:, -1:] + 1 + torch.arange(gen_len, device=device)], dim=1
        ),
        action_mask=column("action"),
        feedback_mask=column("fb"),
        feedback=column("vec", vec_like),
        logprobs=column("logp").double(),
        prompt_length=plen,
        temperature=temperature if temperature > 0 else 1.0,
        sampler=sampler,
        draw=draw,
    )


@torch.no_grad()
def complete(
    policy: NeuralesePolicy,
    prompts: list,
    max_new_tokens: int,
    temperature: float = 0.0,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> tuple[list[str], list[int]]:
    """Answer texts and generated positions (thoughts + answer tokens) for `prompts`, in batches."""
    texts: list[str] = []
    positions: list[int] = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = policy.encode(prompts[start : start + batch_size])
        ro = generate_rollout(policy, ids, mask, max_new_tokens, temperature, generator)
        texts.extend(policy.decode(ro))
        positions.extend(ro.generated_positions.tolist())
    return texts, positions
