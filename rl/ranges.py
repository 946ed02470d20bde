"""Ranges of numbers: every numeric config field and CLI flag declares the values it admits.

A field declares its range in its type, next to its default and docstring:

    learning_rate: PositiveFloat = 1e-6
    gamma: Annotated[float, Range(0, 1)] = 1.0
    data_seed: Seed | None = None

`neuralese.config` checks every declared range (after the types, before the cross-field checks),
the CLI gives each numeric flag a range the same way (`flag_type`), and the generated test
(tests/test_ranges.py) drives every numeric field and flag through NaN, infinity, 0, a
negative value and a wrong type: a numeric field or flag without a declared range fails it.

Every number must also be finite: no setting means anything at NaN or infinity (an infinite
learning rate turns every weight into NaN; `max_grad_norm: 0` is how clipping is turned off).

pydantic's constrained types were the alternative. Its strict mode refuses the `1e-5` that
PyYAML reads as a string, its lax mode takes `true` for an int and `"3"` for 3, and its
messages would need rewording to name the file and key as ours do: the loader's own type
checks stay, and a range is one small declarative object. The alias names follow pydantic's
(`PositiveInt`, `NonNegativeFloat`, ...), with the same meanings.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from neuralese.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The finite numbers from `low` to `high` (None: unbounded), each end closed unless said open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def __str__(self) -> str:
        """How a message says it: `> 0`, `>= 1`, `in (0, 1]`, `a finite number`."""
        low, high = _show(self.low), _show(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return "a finite number"

    def problem(self, value: float) -> str | None:
        """None if `value` is admitted, else what it must be: `> 0`, `a finite number > 0`."""
        if self.admits(value):
            return None
        if math.isfinite(value) or self.low is None and self.high is None:
            return str(self)
        return f"a finite number {self}"


def _show(bound: float | None) -> str:
    return "" if bound is None else f"{bound:g}" if isinstance(bound, float) else str(bound)


ANY = Range()
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
SEED_RANGE = Range(0, 2**32 - 1)  # NumPy's seeds are 32-bit; transformers' set_seed seeds NumPy too

FiniteFloat = Annotated[float, ANY]
PositiveFloat = Annotated[float, POSITIVE]
NonNegativeFloat = Annotated[float, NON_NEGATIVE]
UnitFloat = Annotated[float, Range(0, 1)]  # in [0, 1]
PositiveInt = Annotated[int, AT_LEAST_1]
NonNegativeInt = Annotated[int, NON_NEGATIVE]
AnyInt = Annotated[int, ANY]
Seed = Annotated[int, SEED_RANGE]


def range_of(tp: Any, value: Any = None) -> Range | None:
    """The Range a type hint declares; in a union, the one of the member `value` belongs to
    (`int | Literal['full']` with 3), or the first declared when `value` is None."""
    if typing.get_origin(tp) is Annotated:
        return next((m for m in typing.get_args(tp)[1:] if isinstance(m, Range)), None)
    for member in typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ():
        base = typing.get_args(member)[0] if typing.get_origin(member) is Annotated else member
        if value is None or (base in (int, float) and _is_number(value, base)):
            found = range_of(member)
            if found is not None:
                return found
    return None


def is_numeric(tp: Any) -> bool:
    """True when a type hint admits an int or a float (bool, a subclass of int, does not count)."""
    if typing.get_origin(tp) is Annotated:
        return is_numeric(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(is_numeric(t) for t in typing.get_args(tp))
    return tp in (int, float)


def _is_number(value: Any, base: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if base is int else isinstance(value, (int, float))


def numeric_fields(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """(key, type hint) of every numeric field under dataclass `cls`, sections and list items
    included (`rewards[0].weight`): what the ranges must cover."""
    found = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        section = _section(tp)
        if section is not None:
            item = "[0]" if typing.get_origin(_strip_optional(tp)) is list else ""
            found += numeric_fields(section, f"{prefix}{f.name}{item}.")
        elif is_numeric(tp):
            found.append((f"{prefix}{f.name}", tp))
    return found


def check_ranges(obj: Any, source: str, prefix: str = "") -> None:
    """A ConfigError naming the first field of dataclass `obj` (sections too) whose number is
    outside its declared range: `key 'rl.learning_rate' must be > 0, got -0.001`."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, source, f"{key}.")
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            for i, item in enumerate(value):
                check_ranges(item, source, f"{key}[{i}].")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rng = range_of(hints[f.name], value)
            problem = None if rng is None else rng.problem(value)
            if problem is not None:
                other = _choices(hints[f.name])  # `int >= 0 or 'full'`: say the words it takes too
                raise ConfigError(f"{source}: key '{key}' must be {problem}{other}, got {value!r}")


def _choices(tp: Any) -> str:
    """` or 'full'` for a union with the words of a Literal beside its number, else ``."""
    words = [
        repr(w) for t in typing.get_args(tp) if typing.get_origin(t) is Literal for w in typing.get_args(t)
    ]
    return (
        "".join(f" or {w}" for w in words) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ""
    )


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [t for t in typing.get_args(tp) if t is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _section(tp: Any) -> type | None:
    """The dataclass a field holds (itself, optional, or as list items), else None."""
    tp = _strip_optional(tp)
    if typing.get_origin(tp) is list:
        tp = _strip_optional(typing.get_args(tp)[0])
    return tp if dataclasses.is_dataclass(tp) else None


class RangedType:
    """An argparse `type=` that parses an int or a float and checks its Range, so a flag's
    range is declared the way a config field's is (`neuralese --help` shows it)."""

    def __init__(self, base: type, rng: Range):
        self.base, self.range = base, rng
        self.__name__ = base.__name__  # argparse names the type in its own messages

    def __call__(self, text: str):
        try:
            value = self.base(text)
        except ValueError:
            kind = "an integer" if self.base is int else "a number"
            raise argparse.ArgumentTypeError(f"expects {kind}, got {text!r}") from None
        problem = self.range.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"must be {problem}, got {text}")
        return value


def flag_type(tp: Any) -> RangedType:
    """The argparse type of a flag declared like a config field (`PositiveInt`, `Seed`, ...)."""
    base = typing.get_args(tp)[0]
    rng = range_of(tp)
    assert rng is not None and base in (int, float), f"{tp} declares no numeric range"
    return RangedType(base, rng)
