"""`neuralese planner ...`: a planner over codes and its decoder.

    neuralese planner pretrain RECIPE.yaml [--set key.sub=value ...] [--only decoder|planner] [--overwrite]

Stage 0 of the decoder (reads `prompt + plan`, writes the answer) and of the planner (writes the plan),
each an ordinary stage 0 over its view of the recipe's task (neuralese.planner.pretrain); one JSON line
per model with its folder and as-is evaluation. `neuralese train RECIPE.yaml` then trains the planner
on the task's reward for the decoder's answers; `neuralese eval RUN --env-set plans=shuffled` is the
control, each answer written from another problem's plan (docs/planner.md).
"""

from __future__ import annotations

import argparse
import json

from neuralese.cli.flags import load_recipe, recipe_command


def cmd_pretrain(args: argparse.Namespace) -> None:
    """Stage 0 of both models (or `--only` one); a JSON line for each."""
    cfg = load_recipe(args)  # before the heavy imports: a recipe mistake shows at once
    from neuralese.planner import pretrain_planner
    from neuralese.pretrain import PRETRAIN_LOG

    parts = (args.only,) if args.only else ("decoder", "planner")
    for part, out in pretrain_planner(cfg, parts, overwrite=args.overwrite).items():
        evaluation = json.loads((out / PRETRAIN_LOG).read_text())["evaluation"]
        print(json.dumps({"stage": "pretrain", "part": part, "model": str(out), **evaluation}))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The `planner` command and its subcommands, on the CLI's subparsers."""
    planner = sub.add_parser("planner", help="a planner over codes and a decoder that answers from its plan")
    psub = planner.add_subparsers(dest="action", required=True)
    p = recipe_command(
        psub,
        "pretrain",
        cmd_pretrain,
        "stage 0 of the decoder and of the planner, each on its view of the task",
        None,  # two folders, both named by the recipe (env.args.decoder, model.path)
        recipe="YAML recipe whose env is neuralese.planner:planned (see recipes/planner.yaml)",
    )
    p.add_argument("--only", choices=("decoder", "planner"), help="train one of the two (default: both)")
    p.add_argument("--overwrite", action="store_true", help="replace models already in their folders")
