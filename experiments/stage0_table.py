"""The stage-0 table: answer-only and chain-of-thought accuracy by difficulty, for each reasoning task.

    python -m experiments.stage0_table                       # every row below, 1 torch thread
    python -m experiments.stage0_table --only chase,reach    # some tasks
    python -m experiments.stage0_table --out runs/stage0     # where the models and the table go

Each model is a tiny one trained from scratch here by `neuralese pretrain` (feedback off) on one
task at one difficulty or a mixture of them, once with the answer alone as the target and once
with the task's written chain of thought, then scored greedily on held-out problems of each
difficulty (`neuralese eval`). The
model, optimiser and steps are the recipe's (recipes/chase.yaml for the serial-depth tasks,
which share its 2-layer model; recipes/prosqa.yaml's settings for ProsQA); only the task and the
target change. A finished model is read back from OUT/TASK-TRAINED-FORMAT/result.json.

Writes OUT/table.md and OUT/results.json; prints the table. Each stage runs through the CLI a user
runs (`python -m neuralese.cli ...`) in its own process with one torch thread: `run` and
`neuralese_eval` here, which the other tables of this folder use too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from neuralese.config import load_config

ROOT = Path(__file__).resolve().parents[1]  # recipes/ are named from the checkout's root

WIDE = {"model.tiny.max_positions": 96}  # room for longer prompts than pointer chasing's
CHASE = "{nodes: 8, min_hops: 2, hops: 4}"
# (task, trained on, recipe, overrides, [(difficulty, env args it is scored on; None: the trained ones)])
MODELS = [
    ("chase", "2 hops", "recipes/chase.yaml", {"env.args.hops": 2}, [("2 hops", None)]),
    ("chase", "3 hops", "recipes/chase.yaml", {"env.args.hops": 3}, [("3 hops", None)]),
    ("chase", "4 hops", "recipes/chase.yaml", {"env.args.hops": 4}, [("4 hops", None)]),
    (
        "chase",
        "2-4 hops",
        "recipes/chase.yaml",
        {"env.args": CHASE},
        [(f"{h} hops", {"nodes": 8, "hops": h}) for h in (2, 3, 4)],
    ),
    (
        "reach",
        "2-4 hops",
        "recipes/chase.yaml",
        {"env.name": "reach", "env.args": "{nodes: 10, min_hops: 2, hops: 4}", **WIDE},
        [(f"{h} hops", {"nodes": 10, "hops": h}) for h in (2, 3, 4)],
    ),
    (
        "mnns",
        "3-5 numbers",
        "recipes/chase.yaml",
        {"env.name": "mnns", "env.args": "{min_count: 3, count: 5}", **WIDE},
        [(f"{c} numbers", {"count": c}) for c in (3, 4, 5)],
    ),
    (
        "multiplication",
        "2x2 digits",
        "recipes/chase.yaml",
        {"env.name": "multiplication", "env.args": "{digits: 2}", **WIDE},
        [("2x2 digits", None)],
    ),
    (
        "prontoqa",
        "5 hops",
        "recipes/chase.yaml",
        {"env.name": "prontoqa", "env.args": "{hops: 5}", "model.tiny.max_positions": 160},
        [("5 hops", None)],
    ),
    (
        "prosqa",
        "3-6 hops (generated)",
        "recipes/prosqa.yaml",
        {
            "pretrain.thought_tokens_max": 0,
            "pretrain.max_steps": 3000,
            "env.train_size": 20000,
            "pretrain.warmup_steps": 100,
        },
        [("real valid (300)", None)],
    ),
]
MAX_NEW = {
    "chase": 8,
    "reach": 8,
    "mnns": 40,
    "multiplication": 24,
    "prontoqa": 72,
    "prosqa": 48,
}  # room for the longest chain


NEURALESE = [sys.executable, "-m", "neuralese.cli"]  # the `neuralese` command of this interpreter


def child_env() -> dict[str, str]:
    """Every stage's environment: one torch thread, nothing fetched from the network."""
    return dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")


def set_flags(sets: dict) -> list[str]:
    """`--set KEY=VALUE` for every override."""
    return [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


def run(cmd: list[str], log: Path) -> None:
    """`cmd` in its own process from the checkout's root, its output appended to `log`; exits on failure."""
    with open(log, "a") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT)
    if code != 0:
        sys.exit(f"{Path(sys.argv[0]).stem}: {' '.join(cmd[:4])} failed (exit {code}); see {log}")


def neuralese_eval(model: Path, args: list[str]) -> dict:
    """The JSON line `neuralese eval MODEL ARGS` prints (its last line)."""
    printed = subprocess.run(
        [*NEURALESE, "eval", str(model), *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        check=True,
    ).stdout
    return json.loads(printed.strip().splitlines()[-1])


def model_row(
    out: Path, task: str, trained: str, recipe: str, sets: dict, scored: list, cot: bool
) -> list[dict]:
    """Train one model (unless done) and score it at every difficulty; one result per difficulty."""
    name = f"{task}-{trained.split()[0]}-{'cot' if cot else 'answer'}"
    folder = out / name
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {
        **sets,
        "env.args.cot": cot,
        "pretrain.elided_steps": False,
        "pretrain.output_dir": str(folder / "model"),
        "model.path": str(folder / "model"),
    }
    if "env.args" in sets:  # a whole mapping: put the chain-of-thought switch inside it
        overrides.pop("env.args.cot")
        overrides["env.args"] = sets["env.args"].rstrip("}") + f", cot: {str(cot).lower()}}}"
    cfg = load_config(ROOT / recipe, [f"{k}={v}" for k, v in overrides.items()])
    if not (folder / "model" / "config.json").is_file():  # a model trained earlier is scored as it is
        run([*NEURALESE, "pretrain", recipe, *set_flags(overrides)], folder / "log.txt")
    wall = train_seconds(folder / "model" / "pretrain_log.json")
    results = []
    for difficulty, env_args in scored:
        args = {**(env_args or cfg.env.args), "cot": cot}
        ev = score(folder / "model", cfg, task, args)
        results.append(
            {
                "task": task,
                "trained": trained,
                "difficulty": difficulty,
                "format": "chain of thought" if cot else "answer only",
                "accuracy": ev["accuracy"],
                "n": ev["n"],
                "positions": ev["mean_generated_positions"],
                "steps": cfg.pretrain.max_steps,
                "wall_s": round(wall),
                "recipe": recipe,
                "overrides": overrides,
            }
        )
    done.write_text(json.dumps(results, indent=2))
    return results


def score(model: Path, cfg, task: str, env_args: dict) -> dict:
    """`neuralese eval` of a stage-0 model on the held-out problems of `env_args`."""
    args = [
        "--env",
        cfg.env.name,
        "--env-args",
        json.dumps(env_args),
        "--split",
        cfg.env.test_split,
        "--n",
        str(cfg.env.test_size),
        "--max-new-tokens",
        str(MAX_NEW[task]),
        "--quiet",
    ]
    return neuralese_eval(model, args)


def train_seconds(log: Path) -> float:
    """Stage 0's training time as TRL recorded it (summed over its phases)."""
    data = json.loads(log.read_text())
    phases = data.get("phases") or [{"log_history": data["log_history"]}]
    return sum(e.get("train_runtime", 0.0) for ph in phases for e in ph["log_history"])


def table(results: list[dict]) -> str:
    """The markdown table: answer only against chain of thought, per task, training and difficulty."""
    lines = [
        "| task | trained on | scored on | answer only | chain of thought | positions (answer / chain) | "
        "stage-0 steps | wall s (answer / chain) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    keyed = {(r["task"], r["trained"], r["difficulty"], r["format"]): r for r in results}
    for task, trained, _, _, scored in MODELS:
        for difficulty, _ in scored:
            a = keyed.get((task, trained, difficulty, "answer only"))
            c = keyed.get((task, trained, difficulty, "chain of thought"))
            if not (a or c):
                continue
            cell = lambda r, k, spec: format(r[k], spec) if r else "—"  # noqa: E731
            lines.append(
                f"| {task} | {trained} | {difficulty} | {cell(a, 'accuracy', '.3f')} | "
                f"{cell(c, 'accuracy', '.3f')} | {cell(a, 'positions', '.1f')} / {cell(c, 'positions', '.1f')} | "
                f"{(a or c)['steps']} | {cell(a, 'wall_s', 'd')} / {cell(c, 'wall_s', 'd')} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Train (or read back) and score every chosen model; write and print the table."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.stage0_table", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", default="runs/stage0", help="models, logs and the table")
    p.add_argument("--only", help="comma-separated tasks (default: all)")
    p.add_argument("--formats", default="answer,cot", help="answer, cot or both")
    args = p.parse_args()
    out = Path(args.out)
    only = set(args.only.split(",")) if args.only else None
    results = []
    for task, trained, recipe, sets, scored in MODELS:
        if only and task not in only:
            continue
        for fmt in args.formats.split(","):
            rows = model_row(out, task, trained, recipe, sets, scored, cot=fmt == "cot")
            results += rows
            for r in rows:
                print(
                    f"stage0_table: {task} trained on {trained}, {r['difficulty']}, {r['format']}: "
                    f"{r['accuracy']:.3f} ({r['wall_s']} s)",
                    flush=True,
                )
    text = table(results)
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(text)


if __name__ == "__main__":
    main()
