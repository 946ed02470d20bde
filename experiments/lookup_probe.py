"""Can a tiny model learn pointer chasing's lookup? A fast probe of the settings that decide it.

    python -m experiments.lookup_probe --hops 4 --cot                 # the recipe's model: learns (1.000)
    python -m experiments.lookup_probe --hops 1                       # one lookup, answer only: chance
    python -m experiments.lookup_probe --hops 4 --cot --lr 3e-3       # too high a learning rate: chance
    python -m experiments.lookup_probe --hops 1-4 --cot --hidden 128 --layers 4

The tiny model of `neuralese pretrain` (neuralese.tiny, the same builder and tokenizer) is trained on
fresh pointer-chasing problems (neuralese.envs.chase) every step with plain AdamW, a linear warmup and a
cosine decay, and scored by greedy exact match of the whole target on held-out problems. It
answers in minutes what a full stage 0 answers in tens: which width, depth, learning rate,
batch size, initialisation, architecture and target format let a lookup be learned at all.
Appends one JSON line per run to `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from neuralese.config import TinyModelConfig
from neuralese.envs.chase import Chase
from neuralese.tiny import build_tiny_model, build_tokenizer


def parse_args(argv=None) -> argparse.Namespace:
    """The probe's settings."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.lookup_probe", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--hops", default="4", help="hops per problem, or a range such as 1-4 (drawn per problem)")
    p.add_argument(
        "--cot", action="store_true", help="the target is the chain of visited nodes, not the answer"
    )
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--init", type=float, default=None, help="weight init std (default: the architecture's)")
    p.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    p.add_argument("--eval-n", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/lookup_probe.jsonl")
    return p.parse_args(argv)


def encode(tokenizer, row: dict) -> tuple[list[int], list[int]]:
    """Prompt ids and target ids (the completion and eos)."""
    prompt = tokenizer.encode(row["prompt"], add_special_tokens=False)
    return prompt, tokenizer.encode(row["completion"], add_special_tokens=False) + [tokenizer.eos_token_id]


def batch(tokenizer, env: Chase, rng: random.Random, n: int):
    """`n` fresh problems as padded inputs, targets (-100 outside the completion) and mask."""
    rows = [encode(tokenizer, env.problem(rng)) for _ in range(n)]
    width = max(len(a) + len(b) for a, b in rows)
    x = torch.full((n, width), tokenizer.pad_token_id)
    y = torch.full((n, width), -100)
    mask = torch.zeros(n, width, dtype=torch.long)
    for i, (a, b) in enumerate(rows):
        x[i, : len(a) + len(b)] = torch.tensor(a + b)
        y[i, len(a) : len(a) + len(b)] = torch.tensor(b)
        mask[i, : len(a) + len(b)] = 1
    return x, y, mask


@torch.no_grad()
def score(model, tokenizer, env: Chase, n: int) -> dict[int, float]:
    """Greedy exact match of the whole target per hop count, on problems no training step drew."""
    model.eval()
    rng = random.Random(10**9)
    rows = [env.problem(rng) for _ in range(n)]
    hits: dict[int, list[bool]] = {}
    for hops in sorted({r["hops"] for r in rows}):  # one prompt length per hop count: one batch each
        group = [encode(tokenizer, r) for r in rows if r["hops"] == hops]
        x = torch.tensor([a for a, _ in group])
        for _ in range(max(len(b) for _, b in group)):
            x = torch.cat([x, model(x).logits[:, -1].argmax(-1, keepdim=True)], 1)
        hits[hops] = [x[i, len(a) : len(a) + len(b)].tolist() == b for i, (a, b) in enumerate(group)]
    model.train()
    return {h: round(sum(v) / len(v), 3) for h, v in hits.items()}


def main(argv=None) -> None:
    """Train on fresh problems, score along the way and at the end; append the record to --out."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    low, _, high = args.hops.partition("-")
    env = Chase(nodes=args.nodes, hops=int(high or low), min_hops=int(low), cot=args.cot)
    tokenizer = build_tokenizer(["0123456789,|:"])
    cfg = TinyModelConfig(
        arch=args.arch,
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        intermediate_size=4 * args.hidden,
        max_positions=64,
        init_std=args.init,
    )
    model = build_tiny_model(tokenizer, cfg, seed=args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warm, total = args.warmup, args.steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))
        ),
    )
    rng, start, curve = random.Random(args.seed), time.time(), []
    for step in range(1, total + 1):
        x, y, mask = batch(tokenizer, env, rng, args.batch)
        logits = model(input_ids=x, attention_mask=mask).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), y[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 500 == 0 or step == total:
            curve.append([step, round(loss.item(), 4), score(model, tokenizer, env, 256)])
            print(
                f"lookup_probe: step {step} loss {loss.item():.3f} exact {curve[-1][2]} "
                f"({time.time() - start:.0f} s)",
                flush=True,
            )
    final = score(model, tokenizer, env, args.eval_n)
    record = {"args": vars(args), "final": final, "curve": curve, "wall_s": round(time.time() - start)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps({"final": final, "wall_s": record["wall_s"]}))


if __name__ == "__main__":
    main()
