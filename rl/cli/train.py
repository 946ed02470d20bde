"""`neuralese pretrain` (stage 0: the LM as-is, feedback off) and `neuralese train` (stage 1: RL).

    neuralese pretrain RECIPE.yaml [--set key.sub=value ...] [--out DIR] [--overwrite]
    neuralese train RECIPE.yaml [--set key.sub=value ...] [--out DIR] [--resume]
    neuralese train RUN --resume [--set rl.steps=300]       (the run's own config.yaml, in its folder)

Each prints one JSON line on stdout (the banner, progress and evaluations go to stderr). The recipe
is read and checked before the trainer is imported, so a recipe mistake is reported in a moment.
"""

from __future__ import annotations

import argparse
import json
import sys

from neuralese.cli.flags import load_recipe, recipe_command
from neuralese.config import load_recipe_or_run


def cmd_pretrain(args: argparse.Namespace) -> None:
    """Stage 0; one JSON line naming the as-is model folder and its evaluation."""
    cfg = load_recipe(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.pretrain import PRETRAIN_LOG, pretrain

    if args.out:
        cfg.pretrain.output_dir = args.out
    out = pretrain(cfg, overwrite=args.overwrite)
    evaluation = json.loads((out / PRETRAIN_LOG).read_text())["evaluation"]
    print(json.dumps({"stage": "pretrain", "model": str(out), **evaluation}))


def cmd_train(args: argparse.Namespace) -> None:
    """Stage 1, RL; one JSON line with the run folder, its final evaluation and the one at step 0."""
    # Before the heavy imports, so a recipe mistake is reported in a moment.
    cfg = load_recipe_or_run(args.recipe, args.set or [])
    from neuralese.launch import train

    out = args.out or cfg.output_dir
    result = train(cfg, resume=args.resume, out=out, source=args.recipe)
    if "eval/accuracy" in result.get("start", {}):  # what RL changed, beside what was there before it
        before, after = result["start"]["eval/accuracy"], result["eval/accuracy"]
        print(f"neuralese train: eval accuracy {before} at step 0 -> {after} after RL", file=sys.stderr)
    print(json.dumps({"stage": "train", "output_dir": out, **result}))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`pretrain` and `train`, on the CLI's subparsers."""
    p = recipe_command(
        sub,
        "pretrain",
        cmd_pretrain,
        "stage 0: train the LM as-is (feedback off) with TRL's SFTTrainer",
        "folder for the as-is model (default: pretrain.output_dir or model.path)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the as-is model the folder holds")
    p = recipe_command(
        sub,
        "train",
        cmd_train,
        "stage 1: RL with continuous-thought feedback",
        "run folder (default: the recipe's output_dir; for a run folder, that folder)",
        recipe="YAML recipe (see recipes/), or a run folder to --resume (its config.yaml)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete checkpoint; with RUN, from the run's own config.yaml",
    )
