"""`neuralese pretrain` (stage 0: the LM as-is, feedback off) and `neuralese train` (stage 1: RL).

    neuralese pretrain RECIPE.yaml [--set key.sub=value ...] [--out DIR]
    neuralese train RECIPE.yaml [--set key.sub=value ...] [--out DIR] [--resume]

Each prints one JSON line. The recipe is read and checked before the trainer is imported, so a
recipe mistake is reported in a moment.
"""

from __future__ import annotations

import argparse
import json

from neuralese.cli.flags import load_recipe, recipe_command


def cmd_pretrain(args: argparse.Namespace) -> None:
    """Stage 0; one JSON line naming the as-is model folder."""
    cfg = load_recipe(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.pretrain import pretrain

    if args.out:
        cfg.pretrain.output_dir = args.out
    out = pretrain(cfg)
    print(json.dumps({"stage": "pretrain", "model": str(out)}))


def cmd_train(args: argparse.Namespace) -> None:
    """Stage 1, RL; one JSON line with the run folder and its final numbers."""
    cfg = load_recipe(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.build import check_run
    from neuralese.trainer import Trainer

    check_run(cfg, args.recipe)  # what the recipe's thought mode and policy kind can do
    if args.out:
        cfg.output_dir = args.out
    result = Trainer(cfg, resume=args.resume).train()
    print(json.dumps({"stage": "train", "output_dir": cfg.output_dir, **result}))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`pretrain` and `train`, on the CLI's subparsers."""
    recipe_command(
        sub,
        "pretrain",
        cmd_pretrain,
        "stage 0: train the LM as-is (feedback off) with TRL's SFTTrainer",
        "folder for the as-is model (default: pretrain.output_dir or model.path)",
    )
    p = recipe_command(
        sub,
        "train",
        cmd_train,
        "stage 1: RL with continuous-thought feedback",
        "run folder (default: the recipe's output_dir)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
