"""`neuralese reward-model report`: reward against true accuracy over steps, for RL runs whose reward is
(or includes) a model.

    neuralese reward-model report runs/cmp/verifiable runs/cmp/rm runs/cmp/rm-kl [--window 25]

For each run folder: greedy test accuracy at every evaluation (`eval/accuracy`), and per window of
`--window` steps the mean training reward, the true accuracy of the same samples (`accuracy`, the
environment's check, which a reward model run never trains on), the KL to the as-is model, the
answer length, and the seconds each reward call took. A reward that rises while the accuracy falls is
reward hacking. With a cascade, the share of samples each stage was given, and the audit's agreement.
Markdown tables, for BENCHMARKS.md.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from neuralese.errors import UsageError


def rows(run: Path) -> list[dict]:
    """The metrics rows of a run folder."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(
            f"reward-model report: {run} holds no metrics.jsonl; give the folder of a `neuralese train` run"
        )
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UsageError(f"reward-model report: {path} line {e.lineno} is not JSON ({e.msg})") from None


def mean(values: list) -> float | None:
    """The mean of the numbers among `values`; None without any."""
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.fmean(values) if values else None


def show(v: float | None, digits: int = 3) -> str:
    """A number for a cell, `-` for none."""
    return "-" if v is None else f"{v:.{digits}f}"


def windows(metrics: list[dict], size: int) -> str:
    """Per window of `size` steps of a run's `metrics` rows: reward, true accuracy, KL, length, reward
    times and shares."""
    steps = [r for r in metrics if "reward/mean" in r]
    time_keys = sorted({k for r in steps for k in r if k.startswith("time/reward/")})
    share_keys = sorted(
        {k for r in steps for k in r if k.endswith("/given") or k == "reward/cascade/audit/agreement"}
    )
    head = ["steps", "reward", "true accuracy", "KL", "answer positions", *time_keys, *share_keys]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for start in range(0, len(steps), size):
        w = steps[start : start + size]
        cells = [
            f"{w[0]['step']}-{w[-1]['step']}",
            show(mean([r["reward/mean"] for r in w])),
            show(mean([r.get("accuracy") for r in w])),
            show(mean([r.get("kl") for r in w]), 4),
            show(mean([r.get("generated_positions/mean") for r in w]), 2),
        ]
        cells += [show(mean([r.get(k) for r in w]), 4) for k in time_keys]
        cells += [show(mean([r.get(k) for r in w])) for k in share_keys]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def evals(metrics: list[tuple[Path, list[dict]]]) -> str:
    """Greedy test accuracy of every run (its metrics rows) at every evaluation step."""
    found = [
        (run, {r["step"]: r["eval/accuracy"] for r in rs if "eval/accuracy" in r}) for run, rs in metrics
    ]
    steps = sorted({s for _, by_step in found for s in by_step})
    out = ["| run | " + " | ".join(f"greedy @ {s}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for run, by_step in found:
        out.append(f"| {run} | " + " | ".join(show(by_step.get(s)) for s in steps) + " |")
    return "\n".join(out)


def report(runs: list[Path], window: int = 25) -> str:
    """The evaluation table, then each run's window table (module docstring); each metrics file read once."""
    metrics = [(run, rows(run)) for run in runs]
    return "\n".join([evals(metrics), *(f"\n{run}\n\n{windows(rs, window)}" for run, rs in metrics)])
