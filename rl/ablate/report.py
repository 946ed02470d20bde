"""The tables and the plot of `neuralese ablate`: numbers over seeds, and what says whether a thought is used.

Pure reporting: it reads the per-run results the ablation collected (results.json's `runs`) and
writes OUT/table.md and OUT/accuracy.png. docs/ablation.md explains every column.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from neuralese.ablate.arms import Arm, Plan
from neuralese.config import RunConfig

# Every number of a run that the tables average over seeds (None where it does not apply).
NUMBERS = (
    "accuracy",
    "switch_on",
    "positions",
    "step_s",
    "wall_s",
    "peak_rss_mib",
    "saved_mib",
    "gate",
    "latent_grad_norm",
    "grad_norm",
    "vector_norm",
    "taught",
    "accuracy_gate_closed",
    "accuracy_shuffled",
    "cos_consecutive",
    "cos_across_prompts",
    "thought_to_token",
)
# An arm uses the content of its thoughts when a control is this far below it (accuracy points).
USES_MARGIN = 0.10


def mean_std(values: list) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value) of the numbers among `values`."""
    xs = [v for v in values if isinstance(v, (int, float))]
    if not xs:
        return None, None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def aggregate(runs: list[dict], arms: dict[str, Arm]) -> dict[str, dict]:
    """Per arm: mean and std over seeds of every number, and its pause control's accuracy."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == name]
        spec = arms[name]
        row = {"arm": name, "seeds": len(mine), "stage0": spec.stage0, "control_of": spec.control_of}
        for key in NUMBERS:
            row[key], row[f"{key}_std"] = mean_std([r.get(key) for r in mine])
        # The mode's own numbers (channel mode's |s|, kept, retention a; refine's Δpass), mean over seeds.
        keys = dict.fromkeys(k for r in mine for k in r.get("mode_columns") or {})
        row["mode_columns"] = {
            k: mean_std([(r.get("mode_columns") or {}).get(k) for r in mine])[0] for k in keys
        }
        out[name] = row
    for row in out.values():
        pause = out.get(f"{row['arm']}+pause")
        row["accuracy_pause"] = pause["accuracy"] if pause else None
        row["accuracy_pause_std"] = pause["accuracy_std"] if pause else None
        row["verdict"] = verdict(row)
    return out


def verdict(row: dict) -> str:
    """Whether the arm's answers depend on what its thoughts carry, from the controls it has."""
    acc = row["accuracy"]
    controls = {
        name: row.get(key) for name, key in (("shuffled", "accuracy_shuffled"), ("pause", "accuracy_pause"))
    }
    measured = {k: v for k, v in controls.items() if isinstance(v, (int, float))}
    if acc is None or not measured:
        return "—"
    if all(acc - v >= USES_MARGIN for v in measured.values()):
        return "uses its thoughts"
    if all(acc - v < 0.02 for v in measured.values()):
        return "ignores its thoughts"
    return "partly"


def fmt(value: float | None, spec: str = ".3f", std: float | None = None) -> str:
    """A number for a cell (— for none), with ± its std when given."""
    if value is None:
        return "—"
    text = format(value, spec)
    return text if std is None else f"{text} ± {format(std, spec)}"


def cell_name(name: str) -> str:
    """A column name fit for a markdown cell: |s| would split it, so it is written abs(s), as |g·f|/|e| is."""
    return re.sub(r"[|](.+?)[|]", r"abs(\1)", name)


def write_table(path: Path, cfg: RunConfig, rows: dict[str, dict], as_is: dict, plan: Plan) -> None:
    """OUT/table.md: the results table (one row per as-is model and per arm) and the diagnostics table."""
    path.write_text("\n".join([*results_table(cfg, rows, as_is, plan), "", *diagnostics_table(rows)]) + "\n")


def results_table(cfg: RunConfig, rows: dict[str, dict], as_is: dict, plan: Plan) -> list[str]:
    """The lines of the results table, with the paragraph that says how it was measured."""
    rl = cfg.rl
    lines = [
        f"# Ablation: `{plan.recipe}` (env `{cfg.env.name}` {cfg.env.args or ''})",
        "",
        f"{plan.seeds} seed(s) x {rl.steps} RL steps ({rl.algorithm}, {rl.prompts_per_step} prompts x "
        f"{rl.samples_per_prompt} samples per step, lr {rl.learning_rate:g}, feedback lr "
        f"{rl.feedback_learning_rate or rl.learning_rate:g}) unless an arm sets its own. Accuracy: greedy, on "
        f"{cfg.eval.n} problems of the `{cfg.env.test_split}` split, mean ± sample std over seeds. Switch-on: the "
        "same policy before any RL step; Δ: after RL minus switch-on. Shuffled: the trained policy answering from "
        "another prompt's thoughts; pause: the arm trained with content-free thoughts (`neuralese.space: pause`). "
        f"s/step: median wall seconds of rollout + reward + update, torch on {plan.threads} thread(s), one process "
        "at a time. Peak RSS: the training process's own high-water mark (`VmHWM`). Saved MiB: bytes autograd "
        "saves for one micro-batch's recompute at full length.",
        "",
        "| arm | accuracy | Δ vs switch-on | positions / answer | s / step | switch-on | shuffled | pause "
        "| thoughts | peak RSS MiB | saved MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, b in as_is.items():
        lines.append(
            f"| as-is `{name}`, plain prompt | {b['accuracy']:.3f} | | {b['mean_generated_positions']:.1f} "
            "| | | | | | | |"
        )
    for a in rows.values():
        if a["control_of"]:
            continue
        delta = None if a["accuracy"] is None or a["switch_on"] is None else a["accuracy"] - a["switch_on"]
        lines.append(
            f"| {a['arm']} | {fmt(a['accuracy'], std=a['accuracy_std'])} | {fmt(delta, '+.3f')} | "
            f"{fmt(a['positions'], '.1f')} | {fmt(a['step_s'], '.2f')} | {fmt(a['switch_on'])} | "
            f"{fmt(a['accuracy_shuffled'], std=a['accuracy_shuffled_std'])} | "
            f"{fmt(a['accuracy_pause'], std=a['accuracy_pause_std'])} | {a['verdict']} | "
            f"{fmt(a['peak_rss_mib'], '.0f')} | {fmt(a['saved_mib'], '.1f')} |"
        )
    return lines


def diagnostics_table(rows: dict[str, dict]) -> list[str]:
    """The lines of the diagnostics table (docs/ablation.md explains each column)."""
    lines = [
        "Diagnostics (final policies, mean over seeds; docs/ablation.md explains them): gate = mean |tanh λ|; "
        "|g·f|/|e| = gated thought against the token embedding; latent grad = gradient norm on the latent path "
        "and grad = total gradient norm before clipping (means over the second half of the steps); taught = share "
        "of groups a step learned from (reward spread; RAFT: a kept sample), mean over steps; cos prev = "
        "cosine of consecutive thoughts; cos across = cosine of the same thought for different prompts; "
        "gate closed = accuracy of the trained policy with tanh λ set to 0; mode = the mode's own numbers "
        "(channel: |s| the state's norm, kept the share of it carried over from the position before, a the "
        "learned retention; refine: Δpass).",
        "",
        "| arm | gate | abs(g·f)/abs(e) | latent grad | grad | taught | cos prev | cos across | accuracy, gate closed "
        "| mode |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in rows.values():
        mode = ", ".join(f"{cell_name(k)} {fmt(v)}" for k, v in (a.get("mode_columns") or {}).items()) or "—"
        lines.append(
            f"| {a['arm']} | {fmt(a['gate'], '.4f')} | {fmt(a.get('thought_to_token'), '.4f')} | "
            f"{fmt(a['latent_grad_norm'], '.2e')} | {fmt(a['grad_norm'], '.2e')} | {fmt(a.get('taught'))} | "
            f"{fmt(a.get('cos_consecutive'))} | "
            f"{fmt(a.get('cos_across_prompts'))} | {fmt(a.get('accuracy_gate_closed'))} | {mode} |"
        )
    return lines


def plot(path: Path, runs: list[dict], rows: dict[str, dict], title: str) -> None:
    """Greedy evaluation accuracy over steps (mean ± std over seeds, step 0 = switch-on) and the
    training samples' accuracy (moving average over 10 steps), one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_eval, ax_train) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 1
    for i, (arm, a) in enumerate(rows.items()):
        colour = "black" if arm == "token" else f"C{i % 10}"
        style = "--" if a["control_of"] else "-"
        mine = [r for r in runs if r["arm"] == arm]
        curves = [dict([(0, r["switch_on"])] + [tuple(p) for p in r["eval_curve"]]) for r in mine]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        ys = np.array([[c[s] for s in steps] for c in curves], dtype=float)  # [seeds, points]
        ax_eval.plot(
            steps, ys.mean(0), "o" + style, color=colour, label=arm, lw=2 if arm == "token" else 1.3, ms=3
        )
        ax_eval.fill_between(steps, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), color=colour, alpha=0.12)
        lengths = min(len(r["train_curve"]) for r in mine)
        train = np.array([[acc for _, acc in r["train_curve"][:lengths]] for r in mine])  # [seeds, steps]
        width = min(10, train.shape[1])
        smooth = np.convolve(train.mean(0), np.ones(width) / width, mode="valid")
        ax_train.plot(np.arange(width, train.shape[1] + 1), smooth, style, color=colour, label=arm)
    ax_eval.set(title="greedy accuracy, evaluation split", xlabel="RL step", ylabel="accuracy")
    ax_train.set(title=f"sampled accuracy, training prompts (moving mean of {width})", xlabel="RL step")
    for ax in (ax_eval, ax_train):
        ax.grid(alpha=0.3)
    ax_eval.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
