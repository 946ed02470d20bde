"""The MNNS tables of BENCHMARKS.md ("Superposition") from finished ablations and their diagnostics.

    python -m experiments.mnns.table runs/mnns/ablate runs/mnns24/ablate runs/mnns5/ablate \
        --labels "4 numbers, dim 32" "4 numbers, dim 24" "5 numbers, dim 32"

Reads each folder's `results.json` (`neuralese ablate`) and `diagnostics.jsonl`
(`neuralese ablate RECIPE --out OUT --diagnose --samples 10`) and prints four markdown tables:
accuracy per arm and setting (mean ± std over seeds, switch-on beside it, controls), window `full`
against window 0 for every arm RL must teach, the superposition of each thought before and after RL,
and the discrete chain's pass@k against one continuous answer.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# Arms whose thoughts RL shapes, as (window full, window 0) pairs.
WINDOW_PAIRS = [
    ("soft-full", "soft-w0"),
    ("soft-optimal-full", "soft-optimal-w0"),
    ("multiplex2-full", "multiplex2-w0"),
    ("multiplex3-full", "multiplex3-w0"),
    ("multiplex6-full", "multiplex6-w0"),
    ("gumbel-full", "gumbel-w0"),
    ("hidden-full", "hidden-w0"),
    ("gumbel-optimal-full", "gumbel-optimal-w0"),
    ("multiplex3-optimal-full", "multiplex3-optimal-w0"),
    ("hidden-optimal-full", "hidden-optimal-w0"),
    ("cot2-full", "cot2-w0"),
]
SUPERPOSITION = ("entropy", "support", "reachable_mass", "tv_paths")


def mean_std(xs: list) -> tuple[float | None, float]:
    xs = [x for x in xs if isinstance(x, (int, float))]
    if not xs:
        return None, 0.0
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def cell(xs: list, digits: int = 3) -> str:
    m, s = mean_std(xs)
    return "—" if m is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def load(folder: Path) -> tuple[dict, list[dict]]:
    results = json.loads((folder / "results.json").read_text())
    diag_file = folder / "diagnostics.jsonl"
    diags = [json.loads(line) for line in diag_file.read_text().splitlines()] if diag_file.is_file() else []
    return results, diags


def runs_of(results: dict, arm: str) -> list[dict]:
    return [r for r in results["runs"] if r["arm"] == arm]


def accuracy_table(settings: list[tuple[str, dict, list]]) -> list[str]:
    arms = list(dict.fromkeys(r["arm"] for _, res, _ in settings for r in res["runs"]))
    head = (
        "| arm | "
        + " | ".join(f"{label}: switch-on | after RL | shuffled" for label, _, _ in settings)
        + " | s / run |"
    )
    lines = [head, "|---|" + "---:|---:|---:|" * len(settings) + "---:|"]
    for arm in arms:
        cells, walls = [], []
        for _, res, _ in settings:
            runs = runs_of(res, arm)
            walls += [r["wall_s"] for r in runs]
            cells += [
                cell([r["switch_on"] for r in runs]),
                cell([r["accuracy"] for r in runs]),
                cell([r.get("accuracy_shuffled") for r in runs]),
            ]
        wall = mean_std(walls)[0]
        lines.append(f"| `{arm}` | " + " | ".join(cells) + f" | {'—' if wall is None else f'{wall:.0f}'} |")
    return lines


def window_table(settings: list[tuple[str, dict, list]]) -> list[str]:
    lines = [
        "| setting | arm | window full | window 0 | full − 0 | latent grad (full) | grad norm full / 0 | "
        "entropy after RL, full | entropy after RL, 0 |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, res, diags in settings:
        for full, zero in WINDOW_PAIRS:
            a, b = runs_of(res, full), runs_of(res, zero)
            if not a or not b:
                continue
            delta = mean_std([x["accuracy"] for x in a])[0] - mean_std([x["accuracy"] for x in b])[0]
            grads = f"{mean_std([x['grad_norm'] for x in a])[0]:.2f} / {mean_std([x['grad_norm'] for x in b])[0]:.2f}"
            lines.append(
                f"| {label} | `{full.rsplit('-', 1)[0]}` | {cell([x['accuracy'] for x in a])} | "
                f"{cell([x['accuracy'] for x in b])} | {delta:+.3f} | {mean_std([x['latent_grad_norm'] for x in a])[0]:.3f} | "
                f"{grads} | {per_thought(diags, full, 'after', 'entropy')} | {per_thought(diags, zero, 'after', 'entropy')} |"
            )
    return lines


def per_thought(diags: list[dict], arm: str, when: str, key: str) -> str:
    """A superposition column per thought, mean over the arm's seeds, as 'a / b / c'."""
    rows = [d[when]["superposition"][key] for d in diags if d["arm"] == arm and "superposition" in d[when]]
    if not rows:
        return "—"
    return " / ".join(f"{statistics.fmean(col):.2f}" for col in zip(*rows))


def superposition_table(settings: list[tuple[str, dict, list]]) -> list[str]:
    lines = [
        "| setting | arm | when | accuracy | " + " | ".join(SUPERPOSITION) + " |",
        "|---|---|---|---:|" + "---|" * len(SUPERPOSITION),
    ]
    for label, _, diags in settings:
        arms = list(
            dict.fromkeys(
                d["arm"] for d in diags if "superposition" in d["after"] and "+pause" not in d["arm"]
            )
        )
        for arm in arms:
            for when in ("switch_on", "after"):
                acc = cell([d[when]["accuracy"] for d in diags if d["arm"] == arm])
                cols = " | ".join(per_thought(diags, arm, when, k) for k in SUPERPOSITION)
                lines.append(f"| {label} | `{arm}` | {when.replace('_', '-')} | {acc} | {cols} |")
    return lines


def entropy_scale(settings: list[tuple[str, dict, list]]) -> list[str]:
    out = []
    for label, _, diags in settings:
        rows = [
            d["switch_on"]["superposition"]["entropy_uniform"]
            for d in diags
            if "superposition" in d["switch_on"]
        ]
        if rows:
            out.append(f"{label}: " + " / ".join(f"{statistics.fmean(c):.2f}" for c in zip(*rows)))
    return out


def pass_table(settings: list[tuple[str, dict, list]], ks=(1, 2, 5, 10)) -> list[str]:
    lines = [
        "| setting | arm | when | greedy | " + " | ".join(f"pass@{k}" for k in ks) + " |",
        "|---|---|---|---:|" + "---:|" * len(ks),
    ]
    for label, _, diags in settings:
        for arm in ("token-optimal", "token-uniform", "soft-optimal-full", "soft-full", "cot2-full"):
            for when in ("switch_on", "after"):
                mine = [d[when] for d in diags if d["arm"] == arm and "pass_at" in d[when]]
                if not mine:
                    continue
                passes = " | ".join(cell([m["pass_at"][k - 1] for m in mine]) for k in ks)
                lines.append(
                    f"| {label} | `{arm}` | {when.replace('_', '-')} | {cell([m['accuracy'] for m in mine])} | {passes} |"
                )
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="`neuralese ablate` output folders")
    p.add_argument("--labels", nargs="+", help="a name per folder (default: the folder)")
    args = p.parse_args(argv)
    labels = args.labels or args.folders
    settings = [(label, *load(Path(f))) for label, f in zip(labels, args.folders, strict=True)]
    print(
        "\n".join(
            [
                "## Accuracy",
                "",
                *accuracy_table(settings),
                "",
                "## Window full against window 0",
                "",
                *window_table(settings),
                "",
                "## Superposition (per thought; uniform-distribution entropy: "
                + "; ".join(entropy_scale(settings))
                + ")",
                "",
                *superposition_table(settings),
                "",
                "## Discrete chain pass@k against one continuous answer",
                "",
                *pass_table(settings),
            ]
        )
    )


if __name__ == "__main__":
    main()
