"""`neuralese config`: every config field with its type, default and docstring, or a recipe fully resolved.

    neuralese config                                  every field of RunConfig
    neuralese config RECIPE.yaml [--set key=value]    the recipe with every default filled in, as YAML

Both read only the config's dataclasses: nothing heavy is imported.
"""

from __future__ import annotations

import argparse

import yaml

from neuralese.cli.flags import load_recipe
from neuralese.config import describe_fields, to_dict
from neuralese.errors import UsageError


def cmd_config(args: argparse.Namespace) -> None:
    """Print the recipe fully resolved, or every field's type, default and docstring."""
    if args.recipe:
        print(yaml.safe_dump(to_dict(load_recipe(args)), sort_keys=False), end="")
        return
    if args.set:
        raise UsageError(
            f"--set {args.set[0]!r} needs a RECIPE.yaml to override (see `neuralese config --help`)"
        )
    for key, tp, default, doc in describe_fields():
        shown = "" if default is None and tp[0].isupper() else f" = {default!r}"
        print(f"{key}: {tp}{shown}\n    {doc}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`config`, on the CLI's subparsers."""
    p = sub.add_parser("config", help="document every config field, or print a recipe fully resolved")
    p.add_argument("recipe", nargs="?")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(fn=cmd_config)
