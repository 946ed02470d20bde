"""Every number a user gives has a declared range, and every out-of-range or mistyped number is
refused with one message that names the key or flag, the value and what was expected.

Generated from the config's own fields (`numeric_fields(RunConfig)`) and the CLI parser's own
flags, so a field or flag added later is covered without a test of its own, and one added
without a range fails here. Each is driven through NaN, infinity, 0, a negative value and a
wrong type by the real CLI (`neuralese train RECIPE --out OUT` for a field, the subcommand for
a flag): a value its range refuses must end with exit status 2, exactly one error line, no
traceback and the output folder untouched; a value its range admits must be taken by the type
(a recipe may still refuse it for another field's sake, with a ConfigError, never a traceback).
"""

from __future__ import annotations

import argparse
import math
import re
import typing
from pathlib import Path

import pytest
import yaml
from test_bad_inputs import CORPUS, snapshot

from neuralese.cli import build_parser, main
from neuralese.config import RunConfig, load_config
from neuralese.errors import ConfigError
from neuralese.ranges import RangedType, numeric_fields, range_of

FIELDS = numeric_fields(RunConfig)
# (case name, YAML text of the value, the value YAML reads)
VALUES = [
    ("nan", ".nan", math.nan),
    ("inf", ".inf", math.inf),
    ("-inf", "-.inf", -math.inf),
    ("zero", "0", 0),
    ("negative", "-1", -1),
    ("negative-float", "-0.5", -0.5),
    ("wrong-type-str", "ten", "ten"),
    ("wrong-type-list", "[1]", [1]),
    ("wrong-type-bool", "true", True),
]


def members(tp) -> list:
    """The alternatives of a type hint (itself when it is not a union)."""
    origin = typing.get_origin(tp)
    return list(typing.get_args(tp)) if origin in (typing.Union, type(int | None)) else [tp]


def base(tp):
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp


def accepts_type(tp, value) -> bool:
    """Whether the loader's type check takes `value` for `tp` (a number of the right kind)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    kinds = {base(m) for m in members(tp)}
    return float in kinds or (int in kinds and isinstance(value, int))


def set_key(data: dict, key: str, value) -> None:
    """`a.b[0].c` set in nested recipe data (sections and list items made as needed)."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        name, index = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", part).groups()
        node = node.setdefault(name, [{}] if index else {})
        if index:
            node = node[int(index)]
    node[parts[-1]] = value


def test_the_generated_cases_cover_the_config():
    keys = [k for k, _ in FIELDS]
    for key in (
        "rl.learning_rate",
        "rewards[0].weight",
        "model.tiny.hidden_size",
        "eval.max_new_tokens",
        "seed",
    ):
        assert key in keys
    assert len(keys) >= 50


@pytest.mark.parametrize("key, tp", FIELDS, ids=[k for k, _ in FIELDS])
def test_every_numeric_field_declares_a_range(key, tp):
    undeclared = [m for m in members(tp) if base(m) in (int, float) and range_of(m) is None]
    assert not undeclared, f"{key}: declare its range in its type (neuralese.ranges), e.g. PositiveFloat"


@pytest.fixture(scope="module")
def recipe_base(tmp_path_factory) -> dict:
    """The bad-input corpus's good recipe, with a model path that need not exist: every refusal
    under test comes before any model is looked at."""
    text = (
        (CORPUS / "base.yaml").read_text().replace("@MODEL@", "/nonexistent/model").replace("@PLUGINS@", "/p")
    )
    return yaml.safe_load(text)


def run_cli(argv: list[str], out: Path, capfd) -> tuple[int, str]:
    """The CLI in this process: its exit status and stderr; the folder `out` must not change."""
    before = snapshot(out)
    capfd.readouterr()
    rc = main(argv)  # anything but a NeuraleseError propagates: a traceback fails the test
    err = capfd.readouterr().err
    assert snapshot(out) == before, "the output folder changed"
    return rc, err


def one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"neuralese {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize("name, text, value", VALUES, ids=[v[0] for v in VALUES])
@pytest.mark.parametrize("key, tp", FIELDS, ids=[k for k, _ in FIELDS])
def test_every_numeric_field_refuses_what_its_range_does(
    key, tp, name, text, value, recipe_base, tmp_path, capfd
):
    data = yaml.safe_load(yaml.safe_dump(recipe_base))
    set_key(data, key, yaml.safe_load(text))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    rng = range_of(tp, value) if accepts_type(tp, value) else None
    if accepts_type(tp, value) and rng is not None and rng.admits(value):
        try:
            load_config(recipe)
        except ConfigError:
            pass  # admitted by its range; a check across fields may still refuse the recipe
        return
    rc, err = run_cli(["train", str(recipe), "--out", str(out)], out, capfd)
    line = one_error_line(err, "train")
    assert rc == 2
    assert f"{recipe}: key '{key}'" in line, line
    if accepts_type(tp, value):  # a number of the right kind: the message says the range
        assert f"must be {rng.problem(value)}" in line and f"got {value!r}" in line, line
    else:  # a wrong type: the message says which types
        assert "expects " in line and f"got {value!r}" in line, line


def numeric_flags(parser: argparse.ArgumentParser | None = None, prefix: str = ""):
    """(command, flag, action, the command's other required arguments) for every numeric flag of
    every command, nested ones (`reward-model report`) included."""
    parser = parser or build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for name, p in sub.choices.items():
        command = f"{prefix}{name}"
        if any(isinstance(a, argparse._SubParsersAction) for a in p._actions):
            found += numeric_flags(p, f"{command} ")
            continue
        required = [a for a in p._actions if a.required or not a.option_strings]
        needed = [v for a in required for v in ([a.option_strings[0], "x"] if a.option_strings else ["x"])]
        for a in p._actions:
            default_is_number = isinstance(a.default, (int, float)) and not isinstance(a.default, bool)
            if a.option_strings and (
                a.type in (int, float) or isinstance(a.type, RangedType) or default_is_number
            ):
                found.append((command, a.option_strings[0], a, needed))
    return found


FLAGS = numeric_flags()


def test_the_generated_cases_cover_the_flags():
    flags = {(c, f) for c, f, _, _ in FLAGS}
    assert {
        ("eval", "--n"),
        ("eval", "--temperature"),
        ("eval", "--batch-size"),
        ("inspect", "--top-k"),
        ("reward-model report", "--window"),
    } <= flags


@pytest.mark.parametrize("name, text, value", VALUES[:7], ids=[v[0] for v in VALUES[:7]])
@pytest.mark.parametrize("command, flag, action, needed", FLAGS, ids=[f"{c} {f}" for c, f, _, _ in FLAGS])
def test_every_numeric_flag_refuses_what_its_range_does(
    command, flag, action, needed, name, text, value, tmp_path, capfd
):
    assert isinstance(action.type, RangedType), (
        f"{command} {flag}: give it a range (neuralese.cli.number_flag)"
    )
    text = {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(name, text)
    kind_ok = not isinstance(value, (bool, str, list)) and (
        action.type.base is float or isinstance(value, int)
    )
    if kind_ok and action.type.range.admits(value):
        assert action.type(text) == value
        return
    rc, err = run_cli([*command.split(), *needed, f"{flag}={text}"], tmp_path, capfd)
    line = one_error_line(err, command)
    assert rc == 2 and f"argument {flag}: " in line, line
    if kind_ok:
        assert f"must be {action.type.range.problem(value)}, got {text}" in line, line
    else:
        assert f"expects {'an integer' if action.type.base is int else 'a number'}, got {text!r}" in line, (
            line
        )
