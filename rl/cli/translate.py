"""`neuralese translate fit`: translators between models' thoughts, fitted and measured.

    neuralese translate fit RECIPE.yaml [--set key.sub=value ...] [--out DIR]

Prints one JSON line: the folder, the paired positions, fit times and each translator's fidelity on
held-out text (neuralese.translate.fit).
"""

from __future__ import annotations

import argparse
import json

from neuralese.cli.flags import load_recipe, recipe_command


def cmd_fit(args: argparse.Namespace) -> None:
    """Fit and measure the translators; one JSON line with their fidelity."""
    cfg = load_recipe(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.translate.fit import fit_translators

    if args.out:
        cfg.translate.output_dir = args.out
    out, report = fit_translators(cfg)
    print(
        json.dumps(
            {
                "stage": "translate",
                "output_dir": str(out),
                "positions": report["positions"],
                "fit_s": report["fit_s"],
                "results": report["results"],
            }
        )
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`translate` and its `fit`, on the CLI's subparsers."""
    tr = sub.add_parser("translate", help="translators between models' thoughts: fit them, measure them")
    recipe_command(
        tr.add_subparsers(dest="action", required=True),
        "fit",
        cmd_fit,
        "linear, MLP and common-space translators on paired states; fidelity on held-out text",
        "folder for the translators and report.json (default: translate.output_dir)",
    )
