"""`neuralese reward-model train`: a reward model (and the gears after it) trained on preference pairs.

    neuralese reward-model train RECIPE.yaml [--set key.sub=value ...] [--out DIR]

Prints one JSON line: the folder and each gear's held-out numbers (neuralese.rewardmodels.train).
"""

from __future__ import annotations

import argparse
import json

from neuralese.cli.flags import load_recipe, recipe_command

# What the printed line shows of each gear's report.
GEAR_KEYS = (
    "gear",
    "train_pairs",
    "pairs_right_order",
    "pairwise_accuracy",
    "samples_auc",
    "agreement_with_previous",
)


def cmd_train(args: argparse.Namespace) -> None:
    """Train the reward model's gears; one JSON line with each gear's numbers."""
    cfg = load_recipe(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.io import read_json
    from neuralese.load import load_policy
    from neuralese.rewardmodels.train import train_reward_model

    if args.out:
        cfg.reward_model.output_dir = args.out
    out = train_reward_model(cfg, load_policy)
    report = read_json(out / "report.json", "report.json")
    gears = [{k: g[k] for k in GEAR_KEYS if k in g} for g in report["gears"]]
    print(json.dumps({"stage": "reward-model", "output_dir": str(out), "gears": gears}))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`reward-model` and its `train`, on the CLI's subparsers."""
    rm = sub.add_parser("reward-model", help="reward models: train one (and the gears after it) here")
    recipe_command(
        rm.add_subparsers(dest="action", required=True),
        "train",
        cmd_train,
        "preference pairs from the policy's samples or a file; TRL's RewardTrainer",
        "folder for the gears (default: reward_model.output_dir)",
    )
