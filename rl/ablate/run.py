"""One ablation, start to end: stage 0, every arm x seed trained in its own process, the diagnostics
of each final policy, then the table, the plot and results.json.

Each arm x seed is `neuralese train` with `seed` = the RL seed (sampling) and `data_seed` = the
recipe's seed: every run sees the same prompts and is scored on the same evaluation problems. A
finished run (with its `ablate.json`) is skipped; a run that was cut off resumes from its last
checkpoint. Torch runs on the plan's threads in every process, one process at a time, so the arms'
step times are taken in the same conditions.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from neuralese.ablate.arms import Arm, Plan
from neuralese.ablate.diagnose import diagnose
from neuralese.ablate.processes import run_child
from neuralese.ablate.report import aggregate, plot, write_table
from neuralese.ablate.stage0 import as_is_plain, ensure_as_is, switch_on
from neuralese.modes import get_mode
from neuralese.runlog import RunLog


def training_done(run: Path, steps: int) -> bool:
    """The run's last metrics row is its final evaluation (eval keys only) at the last step."""
    rows = RunLog(run).read_metrics()
    return bool(rows) and rows[-1]["step"] == steps and "reward/mean" not in rows[-1]


def run_arm(plan: Plan, arm: Arm, seed: int, as_is: Path, out: Path) -> dict:
    """Train one arm x seed in its own process (or skip a finished one); its numbers and diagnostics."""
    run = out / "runs" / f"{arm.name}-s{seed}"
    done_file = run / "ablate.json"
    if done_file.is_file():
        return {**json.loads(done_file.read_text()), "skipped": True}
    sets = [f"model.path={as_is}", *arm.sets, f"seed={seed}", f"data_seed={plan.config().seed}"]
    sets.append("log.eval_at_start=false")  # the switch-on accuracy below is that evaluation, cached
    cfg = plan.config(*sets)
    start = switch_on(plan, arm, cfg, out)
    wall, rss = 0.0, None
    if not training_done(run, cfg.rl.steps):
        cli = ["train", str(Path(plan.recipe).resolve()), "--out", str(run)]
        cli += [x for s in [*plan.sets, *sets] for x in ("--set", s)]
        if (run / "metrics.jsonl").is_file():
            cli.append("--resume")  # cut off earlier: the peak RSS is then the resumed part's
        wall, rss = run_child(cli, out / "logs" / f"{arm.name}-s{seed}.log", plan.threads)
    result = {
        "arm": arm.name,
        "seed": seed,
        "wall_s": wall,
        "peak_rss_mib": rss,
        "switch_on": start,
        **summarize(RunLog(run).read_metrics()),
    }
    if not get_mode(cfg.neuralese).feeds_back:
        result["latent_grad_norm"] = None  # the trainer logs 0 for it: there is no latent path at all
    result.update(diagnose(run, cfg, arm))
    done_file.write_text(json.dumps(result, indent=2))
    return result


def summarize(rows: list[dict]) -> dict:
    """Final accuracy, curves, step time and the feedback metrics of one run's metrics.jsonl."""
    steps = [r for r in rows if "reward/mean" in r]
    final = rows[-1]
    step_s = [r["time/rollout_s"] + r["time/reward_s"] + r["time/update_s"] for r in steps]
    late = steps[len(steps) // 2 :]  # the second half: where the run has settled

    def mean_of(key: str, among: list[dict]) -> float | None:
        values = [r[key] for r in among if isinstance(r.get(key), (int, float))]
        return statistics.fmean(values) if values else None

    return {
        "accuracy": final["eval/accuracy"],
        "positions": final["eval/mean_generated_positions"],
        "eval_n": final["eval/n"],
        "step_s": statistics.median(step_s),
        "eval_curve": sorted({r["step"]: r["eval/accuracy"] for r in rows if "eval/accuracy" in r}.items()),
        "train_curve": [[r["step"], r["accuracy"]] for r in steps],
        "gate": steps[-1].get("feedback/gate_mean_abs"),
        "latent_grad_norm": mean_of("feedback/latent_grad_norm", late),
        "grad_norm": mean_of("grad_norm", late),
        "vector_norm": mean_of("feedback/vector_norm", late),
        "taught": taught(steps),
    }


def taught(steps: list[dict]) -> float | None:
    """The share of groups a step learned from, mean over the steps: groups with reward spread for the
    group-relative algorithms (a group whose samples score alike has zero advantages), groups with a kept
    sample for RAFT. None for PPO, whose critic gives every group an advantage."""
    shares = []
    for r in steps:
        if "raft/kept_groups" in r:
            shares.append(r["raft/kept_groups"])
        elif "value/explained_variance" not in r:
            shares.append(1 - r["reward/zero_spread_groups"])
    return statistics.fmean(shares) if shares else None


def earlier_arms(plan: Plan, out: Path) -> tuple[list[dict], dict[str, dict]]:
    """The runs and rows of arms an earlier call wrote into OUT/results.json that this plan does not
    run (`--arms` of another subset), so the table and results.json keep every arm of the folder. Kept
    only when the recipe and its overrides are this plan's; else they are named and left out."""
    path = out / "results.json"
    if not path.is_file():
        return [], {}
    old = json.loads(path.read_text())
    rows = {n: row for n, row in old.get("arms", {}).items() if n not in plan.arms}
    if not rows:
        return [], {}
    if (old.get("recipe"), old.get("overrides")) != (plan.recipe, plan.sets):
        print(
            f"ablate: {path} also holds {', '.join(rows)}, run with {old.get('recipe')} "
            f"{old.get('overrides')}, not this plan's settings: left out of the new table",
            flush=True,
        )
        return [], {}
    return [r for r in old.get("runs", []) if r["arm"] in rows], rows


def ablate(plan: Plan, out: Path) -> None:
    """Run the plan into OUT: stage 0, every arm x seed, then OUT/table.md, OUT/accuracy.png and
    OUT/results.json (every run's numbers)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(plan.threads)
    cfg = plan.config()
    as_is = ensure_as_is(plan, out)
    plain = as_is_plain(plan, as_is, out)
    for variant, b in plain.items():
        print(f"ablate: as-is ({variant}) accuracy {b['accuracy']:.3f} on the plain prompt", flush=True)
    jobs = [(arm, seed) for arm in plan.arms.values() for seed in range(cfg.seed, cfg.seed + plan.seeds)]
    runs = []
    walls = []  # of the runs this call trained, for the time left
    for i, (arm, seed) in enumerate(jobs, 1):
        r = run_arm(plan, arm, seed, as_is[arm.stage0], out)
        runs.append(r)
        if r.get("skipped"):
            how = "done earlier"
        else:
            walls.append(r["wall_s"])
            how = f"{r['wall_s']:.0f} s, peak RSS {r['peak_rss_mib'] or 0:.0f} MiB"
            if i < len(jobs):
                how += f", about {statistics.fmean(walls) * (len(jobs) - i) / 60:.0f} min left"
        print(
            f"ablate: [{i}/{len(jobs)}] {arm.name} seed {seed}: accuracy {r['accuracy']:.3f} "
            f"(switch-on {r['switch_on']:.3f}, {r['positions']:.1f} positions), {r['step_s']:.2f} s/step, {how}",
            flush=True,
        )
    rows = aggregate(runs, plan.arms)
    for name, row in rows.items():  # what `neuralese compare` pairs arms by
        row["sets"] = plan.arms[name].sets
        row["window"] = str(plan.config(*plan.arms[name].sets).neuralese.tbptt_window)
    kept_runs, kept_rows = earlier_arms(plan, out)
    runs, rows = [*kept_runs, *runs], {**kept_rows, **rows}
    write_table(out / "table.md", cfg, rows, plain, plan)
    plot(out / "accuracy.png", runs, rows, f"{plan.recipe}: {plan.seeds} seed(s) x {cfg.rl.steps} steps")
    results = {
        "recipe": plan.recipe,
        "spec": plan.spec,
        "overrides": plan.sets,
        "threads": plan.threads,
        "as_is": plain,
        "arms": rows,
        "runs": runs,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"ablate: wrote {out / 'table.md'}, {out / 'accuracy.png'}, {out / 'results.json'}", flush=True)
