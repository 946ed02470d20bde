"""`neuralese reward-model`: train a reward model (and the gears after it) on preference pairs; report
the runs it rewarded.

    neuralese reward-model train RECIPE.yaml [--set key.sub=value ...] [--out DIR]
    neuralese reward-model report RUN [RUN ...] [--window N]

`train` prints one JSON line: the folder and each gear's held-out numbers (neuralese.rewardmodels.train).
`report` prints, for RL runs, the reward beside the environment's true accuracy over steps
(neuralese.rewardmodels.report): where the reward rises while the accuracy falls, the policy hacks it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuralese.cli.flags import load_recipe, number_flag, recipe_command
from neuralese.ranges import PositiveInt

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


def cmd_report(args: argparse.Namespace) -> None:
    """Reward against true accuracy over steps, markdown."""
    from neuralese.rewardmodels.report import report

    print(report([Path(r) for r in args.runs], args.window))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`reward-model` and its `train` and `report`, on the CLI's subparsers."""
    rm = sub.add_parser(
        "reward-model",
        help="reward models: train one (and the gears after it) here; report runs rewarded by one",
    )
    actions = rm.add_subparsers(dest="action", required=True)
    recipe_command(
        actions,
        "train",
        cmd_train,
        "preference pairs from the policy's samples or a file; TRL's RewardTrainer",
        "folder for the gears (default: reward_model.output_dir)",
    )
    r = actions.add_parser(
        "report", help="reward against the true accuracy over steps, per run (markdown): reward hacking shows"
    )
    r.add_argument("runs", nargs="+", help="`neuralese train` run folders (their metrics.jsonl)")
    number_flag(r, "--window", PositiveInt, 25, "RL steps per row of a run's reward table")
    r.set_defaults(fn=cmd_report)
