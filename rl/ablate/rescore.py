"""`neuralese ablate --diagnose`: every finished run of an ablation scored again, at switch-on and after
RL, with what the table leaves out: OUT/diagnostics.jsonl, one line per run (runs already there are
skipped, so it can follow an ablation that is still growing):

    {"run": "soft-full-s0", "arm": "soft-full", "seed": 0, "switch_on": {...}, "after": {...}}

Each of `switch_on` (the arm's policy before any RL step, from its stage-0 model) and `after` (the run's
newest checkpoint) holds, on the run's own evaluation problems:

    accuracy, n, mean_generated_positions   greedy, as `neuralese eval` prints them
    accuracy_shuffled   greedy, each answer reading another prompt's thoughts (policies with thoughts)
    superposition       per thought, neuralese.superposition's columns against what each step can reach
                        (environments whose rows say it: `reachable`, `reachable_weights`)
    pass_at             pass@1..K from K answers a problem at temperature 1 (`--samples K`; 0: none)
    wall_s              seconds this took
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from neuralese.ablate.stage0 import evaluate_policy, step0_policy
from neuralese.config import RunConfig, load_config
from neuralese.envs import load_split, make_env
from neuralese.evaluate import evaluate
from neuralese.load import load_policy
from neuralese.policy import NeuralesePolicy
from neuralese.superposition import measure

DECLARES_REACH = {"reachable", "reachable_weights"}


def score(policy: NeuralesePolicy, cfg: RunConfig, samples: int) -> dict:
    """One policy's line (module docstring) on the run's evaluation problems."""
    start = time.perf_counter()
    policy.eval()
    result = {k: v for k, v in evaluate_policy(policy, cfg).items() if k != "split"}
    if policy.feedback_on and policy.mode.thought_positions:
        result["accuracy_shuffled"] = evaluate_policy(policy, cfg, thoughts="shuffled")["accuracy"]
        env = make_env(cfg.env.name, cfg.env.args)
        rows = load_split(env, cfg.env.test_split, cfg.eval.n, cfg.seed, cfg.env.name)
        if DECLARES_REACH <= set(rows.column_names):
            result["superposition"] = measure(policy, rows, cfg.eval.max_new_tokens, cfg.eval.batch_size)
    if samples:
        e = cfg.eval
        sampled = evaluate(
            policy,
            make_env(cfg.env.name, cfg.env.args),
            cfg.env.test_split,
            e.n,
            cfg.seed,
            e.batch_size,
            e.max_new_tokens,
            samples=samples,
            temperature=1.0,
            env_name=cfg.env.name,
            progress=False,
        )
        result["pass_at"] = sampled["pass_at"]
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def rescore(out: Path, samples: int) -> int:
    """Every finished run of the ablation folder `out` not yet in OUT/diagnostics.jsonl: its line,
    appended and printed. Returns how many were scored."""
    record = out / "diagnostics.jsonl"
    lines = record.read_text().splitlines() if record.is_file() else []
    done = {json.loads(line)["run"] for line in lines if line.strip()}
    scored = 0
    for run in sorted(p.parent for p in (out / "runs").glob("*/ablate.json")):
        if run.name in done:
            continue
        cfg = load_config(str(run / "config.yaml"))
        line = {
            "run": run.name,
            "arm": json.loads((run / "ablate.json").read_text())["arm"],
            "seed": cfg.seed,
            "switch_on": score(step0_policy(cfg), cfg, samples),
            "after": score(load_policy(run, "cpu"), cfg, samples),
        }
        with open(record, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
        scored += 1
    return scored
