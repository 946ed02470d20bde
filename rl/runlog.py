"""What a run writes for people to read and plot: metrics.jsonl, completions.jsonl, report.png.

`metrics.jsonl` has one JSON object per logged step (flat keys such as `reward/mean`,
`time/rollout_s`), easy to load with pandas or `jq`: step 0 is the evaluation before RL
(`log.eval_at_start`), and an evaluation is part of its step's row (`eval/accuracy`). The same values go to accelerate's
trackers (TensorBoard, wandb when installed). On resume both files are cut back to the
checkpoint's step, so a resumed run's logs read like an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

from neuralese.errors import CheckpointError
from neuralese.io import read_text

REPORT_PANELS = [
    ("reward", ["reward/mean"]),
    ("accuracy", ["accuracy", "eval/accuracy"]),
    ("gate |tanh(lambda)|", ["feedback/gate_mean_abs"]),
    ("generated positions", ["generated_positions/mean"]),
]


class RunLog:
    """Appends metrics and completions; draws the report."""

    def __init__(self, run_dir: Path, accelerator=None, enabled: bool = True):
        self.dir = Path(run_dir)
        self.accelerator = accelerator
        self.enabled = enabled
        self.metrics_path = self.dir / "metrics.jsonl"
        self.completions_path = self.dir / "completions.jsonl"
        self.held: list[tuple[int, dict[str, Any]]] = []

    def truncate(self, step: int) -> None:
        """Drop lines logged after `step` (a resume from the checkpoint at `step`).

        A killed run may have left a half-written last line (no newline): it is dropped. In
        metrics.jsonl only the first row of a step is kept (a run folder written before a step's
        evaluation joined its row has a second one at the last step). `step` -1 drops every row.
        Only the process that writes the log rewrites it: under DDP every rank resumes at once.
        """
        if not self.enabled:
            return
        for path in (self.metrics_path, self.completions_path):
            if not path.is_file():
                continue
            lines = read_text(path, "run log").split("\n")[:-1]  # the part after the last newline is cut off
            keep, seen = [], set()
            for i, ln in enumerate(lines):
                if not ln.strip():
                    continue
                try:
                    row_step = json.loads(ln).get("step", 0)
                except json.JSONDecodeError:
                    raise CheckpointError(
                        f"{path}: line {i + 1} is not JSON; the run log is corrupted"
                    ) from None
                if row_step > step or (path == self.metrics_path and row_step == step and step in seen):
                    continue
                seen.add(row_step)
                keep.append(ln)
            tmp = path.with_name(f".{path.name}.tmp")  # a kill mid-write must not lose the kept rows
            tmp.write_text("".join(ln + "\n" for ln in keep))
            os.replace(tmp, path)

    def hold(self, step: int, values: dict[str, Any]) -> None:
        """A row written just before the next one (or at `flush`): the evaluation before the first step,
        kept out of the log until a step has succeeded."""
        self.held.append((step, values))

    def flush(self) -> None:
        """Write the rows held back."""
        held, self.held = self.held, []
        for step, values in held:
            self.metrics(step, values)

    def metrics(self, step: int, values: dict[str, Any]) -> None:
        self.flush()
        if not self.enabled:
            return
        row = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.accelerator is not None and self.accelerator.trackers:
            self.accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=step)

    def completions(self, step: int, rows: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        with open(self.completions_path, "a") as f:
            for row in rows:
                f.write(json.dumps({"step": step, **{k: _plain(v) for k, v in row.items()}}) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(ln) for ln in self.metrics_path.read_text().splitlines() if ln.strip()]

    def evaluation(self, step: int) -> dict[str, Any]:
        """The evaluation logged at `step` (its `eval/` values), empty when there is none."""
        rows = [r for r in self.read_metrics() if r.get("step") == step]
        return {k: v for r in rows[:1] for k, v in r.items() if k.startswith("eval/")}

    def report(self, title: str = "", notes: dict[str, str] | None = None) -> Path | None:
        """report.png: reward, accuracy, gate and generated positions over steps. `notes`: what a panel
        whose metric the run does not have says instead (the gate of a run without one)."""
        rows = self.read_metrics()
        if not self.enabled or not rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(REPORT_PANELS), figsize=(4 * len(REPORT_PANELS), 3.2))
        for ax, (label, keys) in zip(axes, REPORT_PANELS):
            for key in keys:
                pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="o" if len(pts) < 5 else None, ms=4, label=key)
                elif key in (notes or {}):  # said inside the panel, out of the layout: panels stay put
                    note = ax.text(
                        0.5, 0.5, textwrap.fill(notes[key], 30), ha="center", va="center", fontsize=8
                    )
                    note.set(transform=ax.transAxes, in_layout=False)
            ax.set_title(label)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if len(ax.get_legend_handles_labels()[0]) > 1:
                ax.legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = self.dir / "report.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _plain(v: Any) -> Any:
    """Tensors and NumPy scalars as Python numbers, rounded for readability."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return round(v, 6)
    return v
