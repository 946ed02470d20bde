"""The `neuralese` command line.

    neuralese pretrain RECIPE.yaml [--set key.sub=value ...] [--out DIR] [--overwrite]
    neuralese train RECIPE.yaml [--set key.sub=value ...] [--out DIR] [--resume]
    neuralese train RUN --resume [--set key.sub=value ...]
    neuralese eval RUN_OR_CHECKPOINT [--env NAME] [--env-args YAML] [--split S] [--n N] [--samples K --temperature T] [--thoughts shuffled]
    neuralese export RUN_DIR_OR_CHECKPOINT OUT [--overwrite]
    neuralese inspect RUN_OR_CHECKPOINT [--prompt TEXT] [--out FILE.png] [--top-k K] [--codec-map MAP]
    neuralese reward-model train RECIPE.yaml [--set key.sub=value ...] [--out DIR]
    neuralese reward-model report RUN [RUN ...] [--window N]
    neuralese codec train RECIPE.yaml [--set ...] [--out DIR]    (and codec encode, decode, fit-map)
    neuralese planner pretrain RECIPE.yaml [--set ...] [--only decoder|planner] [--overwrite]
    neuralese translate fit RECIPE.yaml [--set key.sub=value ...] [--out DIR]
    neuralese ablate RECIPE.yaml [--seeds N] [--spec ARMS.yaml] [--arms a,b] [--check | --switch-on]
    neuralese compare ABLATION_DIR [ABLATION_DIR ...] [--labels L ...] [--out FILE.md]
    neuralese config [RECIPE.yaml]     every config field with its type, default and docstring

One module per command group (train, reward_model, translate, evaluate, export, inspect, codec,
planner, ablate, config), each registering its subparsers through `add_commands(subparsers)` and holding
its handlers; the helpers they share are in neuralese.cli.flags. Handlers import torch, transformers
and the trainer only when they run, so `neuralese --help` and a recipe check answer at once.

User errors (a bad recipe, a missing folder, a broken plug-in, a bad command line or flag
value) print one paragraph and exit with status 2, with nothing written; anything else is a
bug and keeps its traceback. Every numeric flag has a declared range (neuralese.ranges); the eval
flags take theirs from the `eval` config fields they stand for, and their defaults from the run.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys

from neuralese.cli import (
    ablate,
    codec,
    config,
    evaluate,
    export,
    inspect,
    planner,
    reward_model,
    train,
    translate,
)
from neuralese.cli.flags import Parser
from neuralese.errors import NeuraleseError, UsageError

# The command groups, in the order `neuralese --help` lists them.
COMMANDS = (train, reward_model, translate, evaluate, export, inspect, codec, planner, ablate, config)


def _quiet_libraries() -> None:
    """Library chatter off (through the environment, so nothing heavy is imported yet)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' and datasets' bars too
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (main() called from Python): tell it directly
        sys.modules["transformers"].utils.logging.set_verbosity_error()
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def build_parser() -> argparse.ArgumentParser:
    """The top parser, with every command group's subparsers."""
    parser = Parser(prog="neuralese", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMANDS:
        group.add_commands(sub)
    return parser


def one_paragraph(message: str) -> str:
    """A message on one line, even when a library's text spans lines; spaces inside a line are
    kept, so a value it quotes (a prompt of three spaces) reads as it is."""
    return re.sub(r"\s*\n\s*", " ", message.strip())


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line parsed; an argument no verb takes is reported by the verb it was given to
    (argparse's top-level parser reports it as its own, pointing at `neuralese --help`), with the
    nearest flag of that verb."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        words = [args.command, *([args.action] if getattr(args, "action", None) else [])]
        verb = parser
        for word in words:
            verb = next(a for a in verb._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
        flags = [f for a in verb._actions for f in a.option_strings]
        first = extra[0].split("=")[0]
        near = difflib.get_close_matches(first, flags, n=1) if first.startswith("-") else []
        hint = f"; did you mean {near[0]}?" if near else ""
        message = f"unrecognized arguments: {' '.join(extra)}{hint} (see `{verb.prog} --help`)"
        raise UsageError(message, verb.prog)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command line; the exit status (2 for a user error, printed as one paragraph)."""
    try:
        args = parse(argv)
    except UsageError as e:
        print(f"{e.prog}: error: {one_paragraph(str(e))}", file=sys.stderr)
        return 2
    _quiet_libraries()
    try:
        args.fn(args)
    except NeuraleseError as e:
        message = one_paragraph(str(e))
        print(f"neuralese {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and cut: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
