"""The environment contract, the built-in registry, and checked access to env data.

An environment is what a factory `make(**args)` returns: an object with

- `dataset(split: str, n: int, seed: int) -> datasets.Dataset` with columns `prompt`
  (non-empty text, or a list of chat messages) and `answer` (non-empty text, or a number),
  checked row by row when a split is loaded; every other column is passed to the
  reward functions by name. An optional `completion` column is the teacher's target for
  stage 0 (`neuralese pretrain`); without it the answer is the target.
- `reward_funcs`: a list of TRL-contract reward functions
  `fn(prompts, completions, **columns) -> list[float | None]`, what RL maximises unless the
  recipe names its own `rewards`.
- `check` (optional): the correctness check, a reward function of the same contract;
  `accuracy` counts a sample correct when it scores at least 1. An environment without one is
  checked by its first reward function.

A recipe names a built-in (`env.name: addition`) or a plug-in factory
(`env.name: path/to/file.py:make` or `pkg.module:make`).
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import datasets

from neuralese.errors import EnvError
from neuralese.plugins import is_reference, lookup

BUILTIN_ENVS: dict[str, str] = {
    "addition": "neuralese.envs.arithmetic:make_addition",
    "multiplication": "neuralese.envs.arithmetic:make_multiplication",
    "prosqa": "neuralese.envs.prosqa:make_prosqa",
    "prontoqa": "neuralese.envs.prontoqa:make_prontoqa",
    "countdown": "neuralese.envs.countdown:make_countdown",
    "gsm8k": "neuralese.envs.gsm8k:make_gsm8k",
    "chase": "neuralese.envs.chase:make_chase",
    "reach": "neuralese.envs.reach:make_reach",
    "mnns": "neuralese.envs.mnns:make_mnns",
}


@runtime_checkable
class Environment(Protocol):
    reward_funcs: list[Callable[..., list[float | None]]]

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset: ...


def env_factory(name: str, key: str = "env.name") -> Callable[..., Any]:
    """The factory for a built-in name or a plug-in reference; `key` is what errors name it by."""
    return lookup(name, BUILTIN_ENVS, key, "environment", "environment factory")


def make_env(
    name: str, args: dict[str, Any] | None = None, keys: tuple[str, str] = ("env.name", "env.args")
) -> Environment:
    """Call the factory with `args` and check that what it returns keeps the contract. `keys`: what
    errors call the name and the args (the recipe's keys, or a command's flags)."""
    factory = env_factory(name, keys[0])
    if not is_reference(name):
        check_arg_types(factory, args or {}, name, keys[1])
    try:
        env = factory(**(args or {}))
    except EnvError:
        raise
    except (TypeError, ValueError) as e:
        if is_reference(name) and isinstance(e, TypeError) and _takes(factory, args or {}):
            raise EnvError(f"env {name!r}: the factory raised TypeError: {e}") from None
        raise EnvError(f"env {name!r}: the factory rejected {keys[1]} {args or {}}: {e}") from None
    except (Exception, SystemExit) as e:  # a plug-in's own code failed: the user's to fix (ours: a bug)
        if not is_reference(name):
            raise
        raise EnvError(f"env {name!r}: the factory raised {type(e).__name__}: {e}") from None
    if not callable(getattr(env, "dataset", None)):
        raise EnvError(
            f"env {name!r}: the factory returned {type(env).__name__}, which has no dataset(split, n, seed) method"
        )
    funcs = getattr(env, "reward_funcs", None)
    if not isinstance(funcs, (list, tuple)) or not funcs or not all(callable(f) for f in funcs):
        raise EnvError(
            f"env {name!r}: the factory returned {type(env).__name__} whose reward_funcs is {funcs!r}; "
            "expected a non-empty list of functions fn(prompts, completions, **columns)"
        )
    check = getattr(env, "check", None)
    if check is not None and not callable(check):
        raise EnvError(
            f"env {name!r}: the factory returned {type(env).__name__} whose check is {check!r}; expected a "
            "function fn(prompts, completions, **columns) that scores a correct completion 1 (or leave it out)"
        )
    return env


def correctness_check(env: Environment) -> Callable[..., list[float | None]]:
    """The environment's correctness check: its `check`, or (without one) its first reward function."""
    check = getattr(env, "check", None)
    return check if check is not None else env.reward_funcs[0]


def check_arg_types(
    factory: Callable[..., Any], args: dict[str, Any], name: str, key: str = "env.args"
) -> None:
    """A built-in factory's arguments against its annotations, so a slip such as `'3'` for 3,
    `"false"` (a true string) for false or `true` for 1 is an error naming the argument, not a
    silently different task. Arguments it does not name are left to the call to refuse."""
    hints = typing.get_type_hints(factory)
    for arg, value in args.items():
        tp = hints.get(arg)
        if tp is None:
            continue
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        options = typing.get_args(tp) if union else (tp,)
        if not any(_fits(option, value) for option in options):
            names = ["null" if o is type(None) else getattr(o, "__name__", str(o)) for o in options]
            expected = " or ".join(names)
            where = f"{key} {arg!r}" if key.startswith("--") else f"{key}.{arg}"  # a flag, or a recipe key
            raise EnvError(f"env {name!r}: {where} expects {expected}, got {_brief(value)}")


def _fits(tp: Any, value: Any) -> bool:
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):  # an int where a float goes is fine; a bool is neither
        return isinstance(value, (int, tp)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True  # anything else the factory checks itself


def _takes(factory: Callable[..., Any], args: dict[str, Any]) -> bool:
    """True when `factory`'s signature accepts `args`, so a TypeError came from inside it (False
    when it has no signature to read: a C function's TypeError is its arguments')."""
    try:
        inspect.signature(factory).bind(**args)
    except (TypeError, ValueError):
        return False
    return True


def load_split(env: Environment, split: str, n: int, seed: int, name: str = "env") -> datasets.Dataset:
    """`env.dataset(split, n, seed)`, checked: a non-empty Dataset with `prompt` and `answer`; its first
    `n` rows when it holds more (a plug-in that returns a whole file), so `n` problems are `n`."""
    try:
        ds = env.dataset(split, n, seed)
    except EnvError:
        raise
    except (Exception, SystemExit) as e:
        # The expected kinds from any env; anything from a plug-in (its own code). A built-in
        # failing otherwise is our bug and keeps its traceback.
        if not isinstance(e, (KeyError, ValueError, FileNotFoundError)) and not is_reference(name):
            raise
        raise EnvError(
            f"env {name!r}: dataset({split!r}, n={n}, seed={seed}) failed: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(ds, datasets.Dataset):
        raise EnvError(
            f"env {name!r}: dataset({split!r}, ...) returned {type(ds).__name__}; expected a datasets.Dataset"
        )
    if len(ds) == 0:  # before the columns: an empty Dataset built from no rows has none
        raise EnvError(f"env {name!r}: dataset({split!r}, n={n}) is empty")
    missing = [c for c in ("prompt", "answer") if c not in ds.column_names]
    if missing:
        raise EnvError(
            f"env {name!r}: dataset({split!r}) has columns {ds.column_names}, missing {missing}; "
            "every environment dataset needs 'prompt' and 'answer'"
        )
    if len(ds) > n:
        ds = ds.select(range(n))
    for column, check in (("prompt", prompt_problem), ("answer", answer_problem)):
        for i, value in enumerate(ds[column]):
            problem = check(value)
            if problem is not None:
                raise EnvError(
                    f"env {name!r}: dataset({split!r}) row {i}, column {column!r}: {problem}, got {_brief(value)}"
                )
    return ds


def prompt_problem(value: Any) -> str | None:
    """What is wrong with a `prompt` value, or None: a non-blank text, or a non-empty list of
    chat messages `{"role": str, "content": str}` (an empty prompt leaves nothing to attend to)."""
    if isinstance(value, str):
        return None if value.strip() else "expected a non-empty text"
    if isinstance(value, list) and value:
        for j, m in enumerate(value):
            if not (
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            ):
                return f"message {j} must be a mapping with text 'role' and 'content'"
        return None
    return "expected a non-empty text or a non-empty list of chat messages {'role': ..., 'content': ...}"


def answer_problem(value: Any) -> str | None:
    """What is wrong with an `answer` value, or None: a non-blank text or a finite number."""
    if isinstance(value, str):
        return None if value.strip() else "expected a non-empty text"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return None
    return "expected a non-empty text or a finite number"


def _brief(value: Any) -> str:
    shown = repr(value)
    return f"{shown[:80]}{'...' if len(shown) > 80 else ''} ({type(value).__name__})"


def env_texts(ds: datasets.Dataset) -> list[str]:
    """All text a tokenizer must cover: prompts (message contents too), answers, completions."""
    texts: list[str] = []
    for col in ("prompt", "answer", "completion"):
        if col not in ds.column_names:
            continue
        for value in ds[col]:
            if isinstance(value, list):
                texts.extend(str(m.get("content", "")) for m in value)
            else:
                texts.append(str(value))
    return texts
