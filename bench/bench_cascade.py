"""Wall time of a gating cascade against its costly stage scoring everything, on the same batches.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_cascade runs/final/cascade --policy runs/quickstart/as-is

The cascade is the `rewards[0]` of RUN's config.yaml (a `cascade`); its last stage alone is the
"scoring everything" peer. Batches are a policy's samples of the run's training problems (GRPO-sized:
`rl.prompts_per_step` x `rl.samples_per_prompt`); the two are timed alternately on each batch, so a
busy machine slows both alike. Prints one JSON line: median seconds per batch of each, their ratio,
the share of samples the costly stage was given, and how many distinct sequences the costly model
ran in all (a reward model scores a repeated sample once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from neuralese.config import load_config
from neuralese.envs import load_split, make_env
from neuralese.load import load_policy
from neuralese.rewards.combine import resolve_reward


def parse_args() -> argparse.Namespace:
    """The command line of `main`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_cascade", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run", help="a run folder whose rewards[0] is a cascade")
    parser.add_argument("--policy", help="whose samples are scored (default: the run's newest checkpoint)")
    parser.add_argument("--batches", type=int, default=20)
    return parser.parse_args()


def main() -> None:
    """Time the cascade and its costly stage alone on the same batches; print one JSON line."""
    args = parse_args()
    cfg = load_config(f"{args.run}/config.yaml")
    spec = cfg.rewards[0]
    assert spec.fn == "cascade", f"{args.run}: rewards[0] is {spec.fn!r}, not a cascade"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cascade = resolve_reward("cascade", spec.args, device=device)
    last = spec.args["stages"][-1]
    everything = resolve_reward(last["fn"], last.get("args"), device=device)
    env = make_env(cfg.env.name, cfg.env.args)
    G, n = cfg.rl.samples_per_prompt, cfg.rl.prompts_per_step
    rows = load_split(env, "train", n * args.batches, cfg.seed, cfg.env.name)
    policy = load_policy(args.policy or args.run, device=device)
    prompts = [p for p in rows["prompt"] for _ in range(G)]
    texts, _ = policy.complete(
        prompts,
        cfg.rl.max_new_tokens,
        cfg.rl.temperature,
        n * G,
        torch.Generator(device=device).manual_seed(cfg.seed),
    )
    times = {"cascade": [], "costly_on_everything": []}
    shares, rows_scored = (
        [],
        {"cascade": 0, "costly_on_everything": 0},
    )  # distinct sequences the costly model ran
    for b in range(args.batches):
        p, c = prompts[b * n * G : (b + 1) * n * G], texts[b * n * G : (b + 1) * n * G]
        for name, fn in (("cascade", cascade), ("costly_on_everything", everything)):
            start = time.perf_counter()
            fn(p, c)
            times[name].append(time.perf_counter() - start)
            costly = cascade.stages[-1] if name == "cascade" else everything
            rows_scored[name] += costly.metrics().get("distinct", 0)
        shares.append(
            next(
                v
                for k, v in cascade.metrics().items()
                if k.startswith(f"stage{len(cascade.stages) - 1}_") and k.endswith("/given")
            )
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "policy": args.policy or args.run,
                "batches": args.batches,
                "batch": n * G,
                "costly_share": round(statistics.fmean(shares), 3),
                **{f"{k}_s": round(v, 4) for k, v in med.items()},
                **{f"{k}_costly_rows": v for k, v in rows_scored.items()},
                "ratio": round(med["cascade"] / med["costly_on_everything"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
