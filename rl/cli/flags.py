"""What the command modules share: the parser class, numeric flags with declared ranges, the
RECIPE.yaml / --set / --out triple, and the values of flags several commands take (`--env-args`).

Everything here is light (argparse, yaml and the config's dataclasses): building the parser
imports no torch, so `neuralese --help` and a recipe check answer at once.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable

import yaml

from neuralese.config import RunConfig, describe_yaml_error, load_config
from neuralese.errors import ConfigError, UsageError
from neuralese.ranges import flag_type


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a UsageError: one message, like every user error
    (argparse's own way prints the usage block and exits from inside the parser)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)", self.prog)


def number_flag(p: argparse.ArgumentParser, flag: str, tp, default, help: str) -> None:
    """A numeric flag whose type declares its range as a config field does (neuralese.ranges); a default
    of None is one the help text itself explains (the recipe's)."""
    kind = flag_type(tp)
    shown = "" if default is None else f"; default {default}"
    p.add_argument(
        flag, type=kind, default=default, help=f"{help} ({kind.base.__name__} {kind.range}{shown})"
    )


def field_type(section: type, name: str):
    """The declared type of a config field, its range included (`PositiveInt`)."""
    return typing.get_type_hints(section, include_extras=True)[name]


def config_flag(
    p: argparse.ArgumentParser, flag: str, section: type, name: str, help: str, *, from_run: bool = False
) -> None:
    """A flag that sets what a config field does: the field's range and default are the flag's. With
    `from_run` its default is None: the value the run being read used (the help text says so)."""
    number_flag(p, flag, field_type(section, name), None if from_run else getattr(section(), name), help)


def recipe_command(
    parent: argparse._SubParsersAction,
    name: str,
    fn: Callable,
    help: str,
    out: str | None,
    *,
    recipe: str = "YAML recipe (see recipes/)",
) -> argparse.ArgumentParser:
    """A verb that reads a recipe: RECIPE.yaml, --set overrides and --out (what `out` says; None: a verb
    whose folders the recipe alone names, without --out)."""
    p = parent.add_parser(name, help=help)
    p.add_argument("recipe", help=recipe)
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a recipe field, e.g. rl.steps=10"
    )
    if out is not None:
        p.add_argument("--out", help=out)
    p.set_defaults(fn=fn)
    return p


def load_recipe(args: argparse.Namespace) -> RunConfig:
    """The recipe a command names, with its --set overrides: checked whole, before anything heavy loads."""
    return load_config(args.recipe, args.set or [])


def env_args_of(text: str | None) -> dict:
    """The mapping an `--env-args` flag gives in YAML (`{digits: 4}`); none: {}."""
    try:
        env_args = yaml.safe_load(text) if text else {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--env-args {text!r} is not valid YAML: {describe_yaml_error(e)}") from None
    if not isinstance(env_args, dict):
        raise ConfigError(f"--env-args must be a mapping such as '{{digits: 4}}', got {text!r}")
    return env_args


def env_flags(p: argparse.ArgumentParser, env_help: str) -> None:
    """--env (required) and --env-args: the environment whose prompts a command answers."""
    p.add_argument("--env", required=True, help=env_help)
    p.add_argument("--env-args", help="factory arguments as YAML, e.g. '{digits: 4}'")
