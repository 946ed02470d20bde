"""The supervised reference: CoT2's continuous supervision, trained here as a stage-0 variant.

    python -m experiments.mnns.supervised recipes/mnns.yaml --out runs/mnns/ablate/as-is-cot2 [--set key=value ...]

CoT2 (Gozeten et al. 2025, `train/continuous_train.py`, supervision `hard_teacher`, loss steps 0 1 2 h)
trains its continuous tokens toward the distribution of the partial sum over all 2^k sign paths at
step k, and feeds the teacher's mixture of embeddings (not the model's own) into the next position;
the answer is the last token. Here the same, on the recipe's environment (MNNS in the values format,
`count` numbers: count - 1 mixtures, then the answer and eos), with the recipe's tiny model and the
tokenizer `neuralese pretrain` would build for it. No feedback runs: the teacher makes every mixture,
so this is stage 0 (a model folder), and RL then starts from it like from any other.

Departures from CoT2: our stage-0 optimiser schedule (AdamW, `pretrain.learning_rate` with warm-up and
cosine decay, `pretrain.batch_size` for `pretrain.max_steps` steps) instead of lr 1e-4 for 1,000
epochs of batch 16; dropout `model.tiny.dropout` while it trains (CoT2: GPT-2's 0.1), saved as 0 so
that RL's recompute is exact; an eos target after the answer, which our answers end with. At test
time the thoughts are the model's own softmax(logits) @ E, as in CoT2's evaluation (latent mode,
embedding space, temperature 1).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import get_cosine_schedule_with_warmup, set_seed

from neuralese.config import NeuraleseConfig, load_config
from neuralese.envs import env_texts, load_split, make_env
from neuralese.envs.mnns import path_distribution, value_text
from neuralese.evaluate import evaluate
from neuralese.io import atomic_dir
from neuralese.policy import NeuralesePolicy
from neuralese.superposition import target_weights, value_tokens
from neuralese.tiny import build_tiny_model, build_tokenizer, piece_pattern


def teacher_batch(rows, tokenizer) -> dict[str, torch.Tensor]:
    """Prompt ids [N, P], teacher distributions [N, K, V] over the K = count - 1 partial sums, and the
    targets after them: answer and eos ids [N, 2]."""
    token_of = {v: t for t, v in value_tokens(tokenizer, signed_only=True).items()}
    prompts = tokenizer(list(rows["prompt"]), return_tensors="pt").input_ids  # [N, P] one length: count fixed
    dists = [[path_distribution(nums, k) for k in range(1, len(nums))] for nums in rows["numbers"]]
    teacher = target_weights(dists, token_of, len(tokenizer))  # [N, K, V]
    if not torch.allclose(teacher.sum(-1), torch.ones(teacher.shape[:2])):
        raise ValueError("a partial sum of the teacher has no token in the vocabulary")
    answers = [tokenizer.convert_tokens_to_ids(value_text(int(a))) for a in rows["answer"]]
    tail = torch.tensor([[a, tokenizer.eos_token_id] for a in answers])  # [N, 2]
    return {"prompt": prompts, "teacher": teacher, "tail": tail}


def supervised_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """CoT2's loss on a batch: cross-entropy to the teacher's distribution at each mixture step (the
    teacher's mixture fed next), then to the answer and eos. Returns (loss, per-step losses [K + 2])."""
    table = model.get_input_embeddings().weight  # [V, D]
    prompt, teacher, tail = batch["prompt"], batch["teacher"], batch["tail"]
    P, K = prompt.shape[1], teacher.shape[1]
    embeds = torch.cat([table[prompt], teacher @ table, table[tail[:, :1]]], dim=1)  # [N, P + K + 1, D]
    logp = F.log_softmax(model(inputs_embeds=embeds).logits[:, P - 1 :].float(), dim=-1)  # [N, K + 2, V]
    soft = -(teacher * logp[:, :K]).sum(-1).mean(0)  # [K]
    hard = F.nll_loss(logp[:, K:].flatten(0, 1), tail.flatten(), reduction="none").view(-1, 2).mean(0)  # [2]
    steps = torch.cat([soft, hard])
    return steps.sum(), steps.detach()


def soft_accuracy(model, tokenizer, env, cfg, num_thoughts: int) -> float:
    """Greedy accuracy on the test split with the model's own soft thoughts (CoT2's evaluation)."""
    nz = NeuraleseConfig(
        mode="latent",
        space="embedding",
        input="latent_only",
        projection="identity",
        num_thoughts=num_thoughts,
        thought_temperature=1.0,
    )
    policy = NeuralesePolicy(model, tokenizer, nz).eval()
    result = evaluate(
        policy,
        env,
        cfg.env.test_split,
        cfg.eval.n,
        cfg.seed,
        cfg.eval.batch_size,
        2,
        env_name=cfg.env.name,
        progress=False,
    )
    model.train()
    return result["accuracy"]


def train(cfg, out: Path, eval_every: int) -> dict:
    set_seed(cfg.seed)
    env = make_env(cfg.env.name, cfg.env.args)
    train_rows = load_split(env, "train", cfg.env.train_size, cfg.seed, cfg.env.name)
    test_rows = load_split(env, cfg.env.test_split, cfg.env.test_size, cfg.seed, cfg.env.name)
    # Every partial sum the teacher weighs is a token, also those no drawn path of the rows writes
    # (5 numbers: sums near +-45 are reached by few sign paths).
    sums = {
        value_text(v)
        for rows in (train_rows, test_rows)
        for nums in rows["numbers"]
        for k in range(1, len(nums))
        for v in path_distribution(nums, k)
    }
    tokenizer = build_tokenizer(
        env_texts(train_rows) + env_texts(test_rows) + ["".join(sorted(sums))],  # signed: one piece each
        pattern=piece_pattern(cfg.model.tiny),
    )
    model = build_tiny_model(tokenizer, cfg.model.tiny, seed=cfg.seed).train()
    data = teacher_batch(train_rows, tokenizer)
    K = data["teacher"].shape[1]
    p = cfg.pretrain
    opt = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    schedule = get_cosine_schedule_with_warmup(opt, min(p.warmup_steps, p.max_steps), p.max_steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    history, start = [], time.perf_counter()
    for step in range(1, p.max_steps + 1):
        idx = torch.randint(len(data["prompt"]), (p.batch_size,), generator=gen)
        loss, steps = supervised_loss(model, {k: v[idx] for k, v in data.items()})
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % eval_every == 0 or step == p.max_steps:
            row = {
                "step": step,
                "loss": round(loss.item(), 4),
                "step_losses": [round(x, 4) for x in steps.tolist()],
                "soft_accuracy": soft_accuracy(model, tokenizer, env, cfg, K),
                "wall_s": round(time.perf_counter() - start, 1),
            }
            history.append(row)
            print(json.dumps(row), flush=True)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "supervised_log.json").write_text(json.dumps({"history": history}, indent=2))
    return history[-1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", help="an MNNS recipe in the values format (recipes/mnns.yaml)")
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--eval-every", type=int, default=500, help="steps between soft-thought evaluations")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.recipe, args.set)
    final = train(cfg, Path(args.out), args.eval_every)
    print(json.dumps({"model": args.out, **final}), flush=True)


if __name__ == "__main__":
    main()
