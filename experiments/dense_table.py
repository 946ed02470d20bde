"""The dense-token policy against the token policy: stage 0 at equal compute, then RL on the dense one.

    python -m experiments.dense_table                      # recipes/dense.yaml as it is, 1 torch thread
    python -m experiments.dense_table --pretrain-steps 300 --rl-steps 60 --out runs/dense_table
    python -m experiments.dense_table --set env.args.digits=3 --out runs/dense_table_3digits
    python -m experiments.dense_table --set model.codec_embedding=atomic --out runs/dense_table_atomic

Steps, each through the CLI a user runs:
  1. `neuralese codec train` the recipe's codec (n text tokens to one FSQ code, on the task's text);
  2. `neuralese pretrain` twice with the same steps, batch, learning rate and tiny model: once with
     `model.codec` (the vocabulary is the codec's codes: the dense model) and once without it (the
     token model: the same recipe on text tokens);
  3. `neuralese eval` both greedily on the test split, the token model with n times the dense model's
     answer budget (the same text length): accuracy and mean generated positions;
  4. `neuralese train` (the recipe's RL) on the dense model: the reward's first and last tenth of steps.

A finished stage is not run again (its folder is read back). Writes OUT/table.md and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiments.stage0_table import NEURALESE, ROOT, neuralese_eval, run, set_flags, train_seconds
from neuralese import features  # noqa: F401  (a dense model's tokenizer is read through the codec feature)
from neuralese.config import load_config
from neuralese.models import load_tokenizer


def timed(cmd: list[str], log: Path, done: Path) -> float:
    """Run `cmd` unless `done` exists; its wall seconds (0 when it was done already)."""
    if done.exists():
        return 0.0
    start = time.perf_counter()
    run(cmd, log)
    return round(time.perf_counter() - start, 1)


def evaluate(model: Path, cfg, max_new: int) -> dict:
    """`neuralese eval` of `model` on the recipe's test split within `max_new` positions; cached beside it."""
    cached = model.parent / f"{model.name}-eval.json"
    if not cached.is_file():
        args = [
            "--env",
            cfg.env.name,
            "--env-args",
            json.dumps(cfg.env.args),
            "--split",
            cfg.env.test_split,
            "--n",
            str(cfg.eval.n),
            "--max-new-tokens",
            str(max_new),
            "--quiet",
        ]
        cached.write_text(json.dumps(neuralese_eval(model, args)) + "\n")
    return json.loads(cached.read_text())


def reward_tenths(metrics: Path) -> dict:
    """The RL run's reward and batch accuracy over its first and last tenth of steps, and its evaluations."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rewards = [r["reward/mean"] for r in rows if "reward/mean" in r]
    tenth = max(1, len(rewards) // 10)
    mean = lambda xs: round(sum(xs) / len(xs), 4)  # noqa: E731
    acc = [r["accuracy"] for r in rows if "accuracy" in r]
    evals = [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
    return {
        "steps": len(rewards),
        "reward_first_tenth": mean(rewards[:tenth]),
        "reward_last_tenth": mean(rewards[-tenth:]),
        "accuracy_first_tenth": mean(acc[:tenth]),
        "accuracy_last_tenth": mean(acc[-tenth:]),
        "eval_accuracy": evals,
    }


def table(r: dict) -> str:
    """The markdown table of the results (and a line on RL, when it ran)."""
    d, t, rl = r["dense"], r["token"], r.get("rl")
    lines = [
        f"Stage 0 at equal compute ({r['pretrain_steps']} steps, batch {r['batch_size']}, the same tiny model); "
        f"greedy on {d['n']} test problems of {r['env']}.",
        "",
        "| model | vocabulary | answer budget (positions) | greedy accuracy | mean generated positions | stage-0 wall s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| dense ({r['tokens_per_code']} tokens per code, {r['codec_embedding']} code embedding) | {r['dense_vocab']} | {r['dense_budget']} | "
        f"{d['accuracy']:.3f} | {d['mean_generated_positions']:.2f} | {r['dense_wall_s']} |",
        f"| token | {r['token_vocab']} | {r['token_budget']} | {t['accuracy']:.3f} | "
        f"{t['mean_generated_positions']:.2f} | {r['token_wall_s']} |",
    ]
    if rl:
        lines += [
            "",
            f"RL on the dense model ({rl['steps']} steps): reward/mean first tenth {rl['reward_first_tenth']}, "
            f"last tenth {rl['reward_last_tenth']}; batch accuracy {rl['accuracy_first_tenth']} -> "
            f"{rl['accuracy_last_tenth']}; eval accuracy by step {rl['eval_accuracy']}; wall {rl['wall_s']} s.",
        ]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    """The command line of `main`."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.dense_table", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--recipe", default="recipes/dense.yaml")
    p.add_argument("--out", default="runs/dense_table")
    p.add_argument("--pretrain-steps", type=int, help="override pretrain.max_steps (both models)")
    p.add_argument("--rl-steps", type=int, help="override rl.steps; 0 skips RL")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another recipe override for every stage (env.args.digits=3)",
    )
    return p.parse_args()


def main() -> None:
    """Codec, both stage 0s, their evaluation and RL on the dense model; write and print the table."""
    args = parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    common = dict(kv.split("=", 1) for kv in args.set)
    if args.pretrain_steps:
        common["pretrain.max_steps"] = args.pretrain_steps
    codec = out / "codec"
    dense_sets = {
        **common,
        "codec.output_dir": codec,
        "model.codec": codec,
        "model.path": out / "dense-as-is",
    }
    token_sets = {
        **common,
        "model.codec": "null",
        "model.codec_embedding": "atomic",
        "model.path": out / "token-as-is",
    }
    cfg = load_config(ROOT / args.recipe, [f"{k}={v}" for k, v in dense_sets.items()])
    timed([*NEURALESE, "codec", "train", args.recipe, *set_flags(dense_sets)], log, codec)
    timed([*NEURALESE, "pretrain", args.recipe, *set_flags(dense_sets)], log, out / "dense-as-is")
    timed([*NEURALESE, "pretrain", args.recipe, *set_flags(token_sets)], log, out / "token-as-is")
    per_code = json.loads((codec / "codec.json").read_text())["tokens_per_code"]
    dense_budget, token_budget = cfg.eval.max_new_tokens, cfg.eval.max_new_tokens * per_code
    result = {
        "env": f"{cfg.env.name} {cfg.env.args}",
        "recipe": args.recipe,
        "tokens_per_code": per_code,
        "codec_embedding": cfg.model.codec_embedding,
        "pretrain_steps": cfg.pretrain.max_steps,
        "batch_size": cfg.pretrain.batch_size,
        "dense_budget": dense_budget,
        "token_budget": token_budget,
        "dense_vocab": len(load_tokenizer(out / "dense-as-is")),
        "token_vocab": len(load_tokenizer(out / "token-as-is")),
        "dense_wall_s": round(train_seconds(out / "dense-as-is" / "pretrain_log.json")),
        "token_wall_s": round(train_seconds(out / "token-as-is" / "pretrain_log.json")),
        "dense": evaluate(out / "dense-as-is", cfg, dense_budget),
        "token": evaluate(out / "token-as-is", cfg, token_budget),
    }
    if args.rl_steps != 0:
        rl_sets = {**dense_sets, "output_dir": out / "dense-rl", "log.trackers": "[]"}
        if args.rl_steps:
            rl_sets["rl.steps"] = args.rl_steps
        wall = timed(
            [*NEURALESE, "train", args.recipe, *set_flags(rl_sets)], log, out / "dense-rl" / "metrics.jsonl"
        )
        result["rl"] = {**reward_tenths(out / "dense-rl" / "metrics.jsonl"), "wall_s": wall or "earlier run"}
    text = table(result)
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    print(text)


if __name__ == "__main__":
    main()
