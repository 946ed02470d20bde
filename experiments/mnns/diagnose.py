"""Diagnose an MNNS policy on held-out problems: greedy accuracy, shuffled thoughts, superposition, pass@k.

    python -m experiments.mnns.diagnose --recipe recipes/mnns.yaml --model runs/mnns/as-is [--set key=value ...]
    python -m experiments.mnns.diagnose --run runs/mnns/ablate/runs/soft-s0
    python -m experiments.mnns.diagnose --ablation runs/mnns/ablate [--samples 10]

`--model` scores a model folder as `neuralese train RECIPE --set model.path=MODEL ...` would start
from it (its switch-on: `--set neuralese.mode=off` for the written chain); `--run` scores a run's
newest checkpoint with the run's own config; `--ablation OUT` scores every run of a `neuralese ablate`
folder after RL and its arm at switch-on (the run's config, its stage-0 model), appending a line per
run to OUT/diagnostics.jsonl (runs already there are skipped). Prints one JSON line per policy:

    accuracy            greedy, on `--n` problems of the test split (CoT2's held-out multisets)
    accuracy_shuffled   greedy, each answer reading another prompt's thoughts (latent policies)
    superposition       per thought: neuralese.superposition's columns against MNNS's sign paths
    pass_at             pass@k for k = 1..`--samples` from samples at temperature 1 (CoT2 sets one
                        continuous sample against the discrete chain's pass@k)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from neuralese.build import build_policy
from neuralese.config import load_config
from neuralese.envs import load_split, make_env
from neuralese.envs.mnns import path_distribution
from neuralese.evaluate import correct, evaluate
from neuralese.load import load_policy
from neuralese.superposition import (
    pass_at_k,
    superposition_stats,
    target_weights,
    thought_distributions,
    value_tokens,
)


def superposition(policy, rows, budget: int, batch_size: int = 512) -> dict[str, list[float]]:
    """neuralese.superposition's columns for every thought of greedy answers to `rows`."""
    token_of = {v: t for t, v in value_tokens(policy.tokenizer, signed_only=True).items()}
    weights, targets = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, mask = policy.encode(chunk["prompt"])
        ro = policy.rollout(ids, mask, budget, 0.0, torch.Generator().manual_seed(0))
        w = thought_distributions(policy, ro)  # [b, K, V]
        weights.append(w)
        targets += [[path_distribution(nums, k + 1) for k in range(w.shape[1])] for nums in chunk["numbers"]]
    w = torch.cat(weights)
    return superposition_stats(w, target_weights(targets, token_of, w.shape[-1]))


def sampled_pass_at(policy, env, rows, budget: int, samples: int, batch_size: int = 512) -> list[float]:
    """[pass@1, ..., pass@samples] from `samples` answers a problem at temperature 1."""
    prompts = [p for p in rows["prompt"] for _ in range(samples)]
    texts, extras = policy.complete(prompts, budget, 1.0, batch_size, torch.Generator().manual_seed(0))
    hits = correct(env, rows, texts, repeat=samples, extras=extras).view(len(rows), samples)  # [N, samples]
    return [round(pass_at_k(hits, k), 4) for k in range(1, samples + 1)]


def diagnose(policy, cfg, n: int, samples: int) -> dict:
    env = make_env(cfg.env.name, cfg.env.args)
    rows = load_split(env, cfg.env.test_split, n, cfg.seed, cfg.env.name)
    budget, start = cfg.eval.max_new_tokens, time.perf_counter()
    policy.eval()

    def run(thoughts: str) -> dict:
        return evaluate(
            policy,
            env,
            cfg.env.test_split,
            n,
            cfg.seed,
            512,
            budget,
            env_name=cfg.env.name,
            progress=False,
            thoughts=thoughts,
        )

    result = {"n": len(rows), **{k: v for k, v in run("own").items() if k != "split"}}
    if policy.feedback_on:
        result["accuracy_shuffled"] = run("shuffled")["accuracy"]
        if policy.mode.thought_positions and "numbers" in rows.column_names:
            result["superposition"] = superposition(policy, rows, budget)
    if samples:
        result["pass_at"] = sampled_pass_at(policy, env, rows, budget, samples)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def diagnose_ablation(out: Path, n: int, samples: int) -> None:
    """Every finished run of an ablation folder after RL, and its arm at switch-on, into OUT/diagnostics.jsonl."""
    record = out / "diagnostics.jsonl"
    done = (
        {json.loads(line)["run"] for line in record.read_text().splitlines()} if record.is_file() else set()
    )
    for run in sorted(p.parent for p in (out / "runs").glob("*/ablate.json")):
        if run.name in done:
            continue
        cfg = load_config(str(run / "config.yaml"))
        arm = json.loads((run / "ablate.json").read_text())["arm"]
        line = {
            "run": run.name,
            "arm": arm,
            "seed": cfg.seed,
            "switch_on": diagnose(build_policy(cfg, "cpu"), cfg, n, samples),
            "after": diagnose(load_policy(run, "cpu"), cfg, n, samples),
        }
        with open(record, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="a model folder, scored at switch-on under the recipe's settings")
    what.add_argument("--run", help="a run folder, scored at its newest checkpoint")
    what.add_argument("--ablation", help="a `neuralese ablate` folder: every run, before and after RL")
    p.add_argument("--recipe", help="the recipe (with --model)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (with --model)"
    )
    p.add_argument("--n", type=int, default=2000, help="test problems (all 1,308 of CoT2's 4-number split)")
    p.add_argument("--samples", type=int, default=0, help="samples a problem for pass@k (0: none)")
    p.add_argument("--label", default="", help="a name carried into the JSON line")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.ablation:
        diagnose_ablation(Path(args.ablation), args.n, args.samples)
        return
    if args.model:
        if not args.recipe:
            p.error("--model needs --recipe")
        cfg = load_config(args.recipe, [*args.set, f"model.path={args.model}"])
        policy = build_policy(cfg, "cpu")
    else:
        cfg = load_config(str(Path(args.run) / "config.yaml"))
        policy = load_policy(Path(args.run), "cpu")
    out = {
        "label": args.label,
        "model": args.model or args.run,
        "overrides": args.set,
        **diagnose(policy, cfg, args.n, args.samples),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
