"""`neuralese compare`: finished ablations side by side, one column group per label.

    neuralese compare runs/mnns/ablate runs/mnns24/ablate --labels "dim 32" "dim 24"
    neuralese compare runs/mnns6/a runs/mnns6/b --labels "6 numbers" "6 numbers"   # one setting, two folders

Folders given the same label are one setting whose arms ran in several `--out` folders (two
ablations at once, one core each): their arms, stage-0 scores and diagnostics are read together, so
window `full` in one folder pairs with window 0 in another.

Reads each folder's results.json (`neuralese ablate`) and, where it exists, diagnostics.jsonl
(`neuralese ablate RECIPE --out OUT --diagnose`), and prints markdown:

- accuracy: every stage-0 model on the plain prompt, then every arm at switch-on and after RL with
  its shuffled and pause controls (mean ± std over seeds) and its wall seconds per run;
- window `full` against window 0: every pair of arms that start from the same stage 0 and differ only
  in `neuralese.tbptt_window`, with the gradient norms and, from the diagnostics, each thought's
  entropy after RL;
- superposition: each thought's numbers (`neuralese eval --superposition`) before and after RL;
- pass@k: every run scored with samples, at switch-on and after RL, beside its greedy accuracy.

Pure reporting: nothing is trained or scored here.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from neuralese.ablate.arms import load_spec, with_controls
from neuralese.ablate.report import fmt, mean_std
from neuralese.config import load_config
from neuralese.errors import ConfigError, UsageError

WINDOW = "neuralese.tbptt_window="
SUPERPOSITION = ("entropy", "support", "reachable_mass", "tv_paths")
PASS_AT = (1, 2, 5, 10)


def read_folder(folder: Path) -> tuple[dict, list[dict]]:
    """An ablation folder's results.json and diagnostics (empty without --diagnose)."""
    path = folder / "results.json"
    if not path.is_file():
        raise UsageError(f"compare: {folder} holds no results.json; run `neuralese ablate` into it first")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"compare: {path} line {e.lineno} is not JSON ({e.msg})") from None
    if not isinstance(results, dict) or not (
        isinstance(results.get("runs"), list) and isinstance(results.get("arms"), dict)
    ):
        raise UsageError(f"compare: {path} is not an ablation's results (expected `runs` and `arms`)")
    diag = folder / "diagnostics.jsonl"
    lines = diag.read_text().splitlines() if diag.is_file() else []
    diagnostics = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            diagnostics.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UsageError(f"compare: {diag} line {i} is not JSON ({e.msg})") from None
    return results, diagnostics


def folder_windows(results: dict) -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Per arm of one folder: its stage 0, its overrides other than the window, and its window. Read
    from results.json; an ablation written before it kept them is read from its recipe and spec files
    (raises ConfigError when those are gone)."""
    rows = results["arms"]
    if all("window" in row for row in rows.values()):
        return {
            name: (row["stage0"], tuple(s for s in row["sets"] if not s.startswith(WINDOW)), row["window"])
            for name, row in rows.items()
        }
    _, spec_arms = load_spec(results.get("spec"))
    arms = with_controls(spec_arms)
    out = {}
    for name in rows:
        if name not in arms:
            raise ConfigError(f"arm {name!r} is not in the spec {results.get('spec')}")
        arm = arms[name]
        cfg = load_config(results["recipe"], [*results.get("overrides", []), *arm.sets])
        out[name] = (
            arm.stage0,
            tuple(s for s in arm.sets if not s.startswith(WINDOW)),
            str(cfg.neuralese.tbptt_window),
        )
    return out


class Setting:
    """One column group: the ablation folders given one label (arms of one setting split over
    several folders read as one), their runs, arms, stage-0 scores and diagnostics."""

    def __init__(self, label: str, folders: list[Path]) -> None:
        self.label, self.folders = label, folders
        self.runs: list[dict] = []
        self.arms: dict[str, dict] = {}
        self.as_is: dict[str, dict] = {}
        self.diagnostics: list[dict] = []
        self.results: list[dict] = []
        for folder in folders:
            results, diagnostics = read_folder(folder)
            self.results.append(results)
            self.runs += results["runs"]
            self.arms.update(results["arms"])
            self.as_is.update(results.get("as_is", {}))
            self.diagnostics += diagnostics

    def runs_of(self, arm: str) -> list[dict]:
        return [r for r in self.runs if r["arm"] == arm]

    def windows(self) -> dict[str, tuple[str, tuple[str, ...], str]]:
        """Per arm of every folder: stage 0, the overrides but the window, the window."""
        out: dict[str, tuple[str, tuple[str, ...], str]] = {}
        for results in self.results:
            out.update(folder_windows(results))
        return out


def cell(values: list, digits: int = 3) -> str:
    """Mean ± std of the numbers among `values` (— for none)."""
    m, s = mean_std(values)
    return fmt(m, f".{digits}f", s)


def accuracy_table(settings: list[Setting]) -> list[str]:
    """Stage-0 models on the plain prompt, then every arm (pause twins in their arm's column)."""
    head = " | ".join(f"{s.label}: switch-on | after RL | shuffled | pause" for s in settings)
    lines = [f"| arm | {head} | s / run |", "|---|" + "---:|---:|---:|---:|" * len(settings) + "---:|"]
    variants = list(dict.fromkeys(v for s in settings for v in s.as_is))
    for variant in variants:
        cells = []
        for s in settings:
            b = s.as_is.get(variant)
            cells += [fmt(b["accuracy"]) if b else "—", "", "", ""]
        lines.append(f"| stage 0 `{variant}`, plain prompt | " + " | ".join(cells) + " | |")
    arms = [
        a for a in dict.fromkeys(r["arm"] for s in settings for r in s.runs) if not control_of(settings, a)
    ]
    for arm in arms:
        cells, walls = [], []
        for s in settings:
            mine, pause = s.runs_of(arm), s.runs_of(f"{arm}+pause")
            walls += [r.get("wall_s") for r in mine]
            cells += [
                cell([r.get("switch_on") for r in mine]),
                cell([r.get("accuracy") for r in mine]),
                cell([r.get("accuracy_shuffled") for r in mine]),
                cell([r.get("accuracy") for r in pause]),
            ]
        lines.append(f"| `{arm}` | " + " | ".join(cells) + f" | {fmt(mean_std(walls)[0], '.0f')} |")
    return lines


def control_of(settings: list[Setting], arm: str) -> str | None:
    """The arm `arm` is the pause twin of, in whichever folder ran it."""
    return next((s.arms[arm].get("control_of") for s in settings if arm in s.arms), None)


def window_pairs(setting: Setting) -> list[tuple[str, str]]:
    """(window full, window 0) arm pairs: the same stage 0 and overrides but for the window."""
    found = setting.windows()
    pairs = []
    for name, (stage0, rest, window) in found.items():
        if window != "full" or setting.arms[name].get("control_of"):
            continue
        zero = next(
            (
                other
                for other, (s0, r, w) in found.items()
                if w == "0" and s0 == stage0 and r == rest and not setting.arms[other].get("control_of")
            ),
            None,
        )
        if zero:
            pairs.append((name, zero))
    return pairs


def window_table(settings: list[Setting]) -> list[str]:
    """Window `full` against window 0 for every pair, per setting."""
    lines = [
        "| setting | arms (full / 0) | window full | window 0 | full − 0 | latent grad (full) | "
        "grad norm full / 0 | entropy after RL, full | entropy after RL, 0 |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    notes = []
    for s in settings:
        try:
            pairs = window_pairs(s)
        except (ConfigError, OSError) as e:
            notes.append(f"{s.label}: window pairs unknown ({e})")
            continue
        for full, zero in pairs:
            a, b = s.runs_of(full), s.runs_of(zero)
            acc_a, acc_b = (
                mean_std([x.get("accuracy") for x in a])[0],
                mean_std([x.get("accuracy") for x in b])[0],
            )
            delta = None if acc_a is None or acc_b is None else acc_a - acc_b
            grads = (
                f"{fmt(mean_std([x.get('grad_norm') for x in a])[0], '.2f')} / "
                f"{fmt(mean_std([x.get('grad_norm') for x in b])[0], '.2f')}"
            )
            lines.append(
                f"| {s.label} | `{full}` / `{zero}` | {cell([x.get('accuracy') for x in a])} | "
                f"{cell([x.get('accuracy') for x in b])} | {fmt(delta, '+.3f')} | "
                f"{fmt(mean_std([x.get('latent_grad_norm') for x in a])[0])} | {grads} | "
                f"{per_thought(s, full, 'after', 'entropy')} | {per_thought(s, zero, 'after', 'entropy')} |"
            )
    return lines + ([""] + notes if notes else [])


def per_thought(setting: Setting, arm: str, when: str, key: str) -> str:
    """One superposition number per thought, mean over the arm's seeds, as 'a / b / c'."""
    rows = [
        d[when]["superposition"][key]
        for d in setting.diagnostics
        if d["arm"] == arm and "superposition" in d.get(when, {})
    ]
    if not rows:
        return "—"
    return " / ".join(f"{statistics.fmean(col):.2f}" for col in zip(*rows))


def diagnosed_arms(setting: Setting, key: str) -> list[str]:
    """The arms (pause twins aside) whose diagnostics after RL hold `key`."""
    return list(
        dict.fromkeys(
            d["arm"]
            for d in setting.diagnostics
            if key in d.get("after", {}) and not setting.arms.get(d["arm"], {}).get("control_of")
        )
    )


def superposition_table(settings: list[Setting]) -> list[str]:
    """Each thought's superposition numbers at switch-on and after RL, with the greedy accuracy."""
    lines = [
        "| setting | arm | when | accuracy | " + " | ".join(SUPERPOSITION) + " |",
        "|---|---|---|---:|" + "---|" * len(SUPERPOSITION),
    ]
    for s in settings:
        for arm in diagnosed_arms(s, "superposition"):
            for when in ("switch_on", "after"):
                acc = cell([d[when]["accuracy"] for d in s.diagnostics if d["arm"] == arm])
                cols = " | ".join(per_thought(s, arm, when, k) for k in SUPERPOSITION)
                lines.append(f"| {s.label} | `{arm}` | {when.replace('_', '-')} | {acc} | {cols} |")
    return lines


def uniform_entropy(settings: list[Setting]) -> str:
    """Per setting, the entropy of the uniform distribution over each thought's reachable values."""
    parts = []
    for s in settings:
        rows = [
            d["switch_on"]["superposition"]["entropy_uniform"]
            for d in s.diagnostics
            if "entropy_uniform" in d.get("switch_on", {}).get("superposition", {})
        ]
        if rows:
            parts.append(f"{s.label}: " + " / ".join(f"{statistics.fmean(c):.2f}" for c in zip(*rows)))
    return "; ".join(parts) or "—"


def pass_table(settings: list[Setting]) -> list[str]:
    """pass@k beside greedy accuracy, for every arm scored with samples."""
    lines = [
        "| setting | arm | when | greedy | " + " | ".join(f"pass@{k}" for k in PASS_AT) + " |",
        "|---|---|---|---:|" + "---:|" * len(PASS_AT),
    ]
    for s in settings:
        for arm in diagnosed_arms(s, "pass_at"):
            for when in ("switch_on", "after"):
                mine = [d[when] for d in s.diagnostics if d["arm"] == arm and d[when].get("pass_at")]
                if not mine:
                    continue
                passes = " | ".join(
                    cell([m["pass_at"][k - 1] if len(m["pass_at"]) >= k else None for m in mine])
                    for k in PASS_AT
                )
                greedy = cell([m["accuracy"] for m in mine])
                lines.append(f"| {s.label} | `{arm}` | {when.replace('_', '-')} | {greedy} | {passes} |")
    return lines


def compare(folders: list[str | Path], labels: list[str] | None = None) -> str:
    """The markdown of `neuralese compare` (module docstring) for these ablation folders."""
    if labels is not None and len(labels) != len(folders):
        raise UsageError(
            f"compare: {len(folders)} folder(s) but {len(labels)} label(s); give one label per folder"
        )
    grouped: dict[str, list[Path]] = {}
    for label, folder in zip(labels or map(str, folders), folders):
        grouped.setdefault(label, []).append(Path(folder))
    settings = [Setting(label, group) for label, group in grouped.items()]
    sections = [
        ("Accuracy (greedy; mean ± std over seeds)", accuracy_table(settings)),
        ("Window full against window 0", window_table(settings)),
        (
            f"Superposition per thought (entropy of the uniform over reachable values: {uniform_entropy(settings)})",
            superposition_table(settings),
        ),
        ("pass@k against greedy", pass_table(settings)),
    ]
    out = []
    for title, lines in sections:
        if len(lines) > 2:  # a header and its rule alone: nothing to show
            out += [f"## {title}", "", *lines, ""]
    return "\n".join(out)
