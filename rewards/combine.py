"""Calling reward functions safely and summing them with weights.

Every reward function keeps the TRL contract `fn(prompts, completions, **columns)` and
returns one `float` or `None` per completion (`None`: does not apply to this sample).
`compute_rewards` checks each call: an exception, a timeout, a wrong length, a NaN or a
non-number ends the run with a message naming the function and the sample, never a
silent reward of 0. Async functions (`async def`) are awaited.

The weighted sum treats `None` as "not counted", as TRL does (a NaN-aware sum).

Besides functions, rewards may be objects built from their typed `args` with the policy's device,
registered by name (`register_reward_object`): neuralese.rewardmodels registers `reward_model` (a
sequence classifier), `judge` (a causal LM asked a question) and `cascade` (stages that answer where
they can) when it is imported. They keep the same contract, so the trainer calls them like any function. Any reward may also have a `metrics()`
method; `compute_rewards` logs what it returns beside every function's call time.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import numbers
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from neuralese.config import from_dict
from neuralese.errors import ConfigError, RewardError
from neuralese.plugins import lookup
from neuralese.ranges import check_ranges
from neuralese.rewards import countdown, match, numeric, shaping


def builtin_rewards() -> dict[str, Callable]:
    """Built-in reward functions by name."""
    return {
        "exact_match": match.exact_match,
        "digit_credit": match.digit_credit,
        "numeric_match": numeric.numeric_match,
        "countdown_match": countdown.countdown_match,
        "format_match": shaping.format_match,
        "length_penalty": shaping.length_penalty,
        "thought_penalty": shaping.thought_penalty,
    }


# Rewards built from typed args (a model to load, stages to resolve): name -> class. Each class has an
# `Args` dataclass and is built as `cls(args, device=..., key=...)`.
REWARD_OBJECTS: dict[str, type] = {}


def register_reward_object(name: str, cls: type) -> type:
    """Make `name` in a recipe's `rewards` build `cls` from its typed args; a feature calls this when imported."""
    REWARD_OBJECTS[name] = cls
    return cls


CONTRACT_PARAMS = ("prompts", "completions")


def check_reward_args(fn: Callable, args: dict[str, Any], key: str) -> None:
    """Every bound argument must be a named parameter of `fn` (not only swallowed by `**kwargs`).

    Reward functions take `**kwargs` so that extra columns never break them; without
    this check a misspelt argument (`max_token`) would vanish silently.
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return  # a builtin or C function without a signature: let the call decide
    named = [
        p
        for p in params
        if p not in CONTRACT_PARAMS
        and params[p].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [a for a in args if a not in named]
    if unknown:
        raise ConfigError(
            f"{key}: reward function {reward_name(fn)!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters are: {', '.join(named) or '(none besides prompts, completions)'}"
        )


def resolve_reward(
    name: str, args: dict[str, Any] | None = None, key: str = "rewards", device: Any = "cpu"
) -> Callable:
    """A reward function from a built-in name or a plug-in reference, with `args` bound; a built-in
    reward object (REWARD_OBJECTS) built from its typed args, its model on `device`."""
    fn = lookup(name, {**builtin_rewards(), **REWARD_OBJECTS}, key, "reward function")
    where = f"{key.removesuffix('.fn')}.args"  # the recipe key beside `fn`
    if name in REWARD_OBJECTS:
        return fn(typed_args(fn.Args, args or {}, where), device=device, key=where)
    if args:
        check_reward_args(fn, args, where)
        bound = functools.partial(fn, **args)
        functools.update_wrapper(bound, fn)
        return bound
    return fn


def typed_args(cls: type, args: dict[str, Any], key: str):
    """`args` as dataclass `cls`, with the recipe's checks: unknown keys, types, declared ranges."""
    parsed = from_dict(cls, args, source="recipe", prefix=f"{key}.")
    check_ranges(parsed, "recipe", prefix=f"{key}.")
    return parsed


def reward_name(fn: Callable) -> str:
    """A short name for logs: the function's `__name__`; a callable object's class name (its repr
    holds a memory address, which would name the metric differently in every run)."""
    return (
        getattr(fn, "__name__", None)
        or getattr(getattr(fn, "func", None), "__name__", None)
        or type(fn).__name__
    )


def _run(
    fn: Callable, prompts: list, completions: list, columns: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    """Run `fn` in a daemon thread so a hung function ends in an error, not a stuck run.

    Returns {"out": value}, {"err": exception} or {} when it did not finish in time.
    """
    box: dict[str, Any] = {}

    def target():
        try:
            box["out"] = invoke(fn, prompts, completions, columns)
        except BaseException as e:  # reported by the caller with the function's name
            box["err"] = e

    thread = threading.Thread(target=target, daemon=True, name=f"reward-{reward_name(fn)}")
    thread.start()
    thread.join(timeout_s)
    return box


def invoke(fn: Callable, prompts: list, completions: list, columns: dict[str, Any]) -> Any:
    """`fn` called with the TRL contract; an async function is awaited."""
    out = fn(prompts=prompts, completions=completions, **columns)
    if inspect.isawaitable(out):
        out = asyncio.run(_await(out))
    return out


def subset_columns(columns: dict[str, Any], idx: list[int], n: int) -> dict[str, Any]:
    """The columns of samples `idx` (of `n`): per-sample lists are indexed, anything else is kept."""
    return {k: [v[i] for i in idx] if isinstance(v, list) and len(v) == n else v for k, v in columns.items()}


def _failing_sample(
    fn: Callable, prompts: list, completions: list, columns: dict[str, Any], timeout_s: float
) -> int | None:
    """The first sample on which `fn` raises when called on it alone, within `timeout_s` in all.

    Only runs after a batch call failed, to name the sample in the error message.
    """
    n = len(completions)
    deadline = time.monotonic() + timeout_s
    for i in range(n):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if "err" in _run(fn, [prompts[i]], [completions[i]], subset_columns(columns, [i], n), left):
            return i
    return None


def _call(fn: Callable, prompts: list, completions: list, columns: dict[str, list], timeout_s: float) -> Any:
    """`fn` on the batch; an exception or timeout becomes a RewardError naming the function and sample."""
    check_columns(fn, columns)
    box = _run(fn, prompts, completions, columns, timeout_s)
    if not box:
        raise RewardError(
            f"reward function {reward_name(fn)!r} did not return within {timeout_s:g} s "
            f"(rl.reward_timeout_s) on a batch of {len(completions)} completions"
        )
    if "err" in box:
        err = box["err"]
        if isinstance(err, RewardError):  # a reward object's own message already names what is wrong
            raise err
        i = _failing_sample(fn, prompts, completions, columns, timeout_s) if len(completions) > 1 else 0
        where = (
            f"on sample {i} (prompt {_clip(prompts[i])!r}, completion {_clip(completions[i])!r})"
            if i is not None
            else f"on a batch of {len(completions)} (no single sample fails alone; first prompt {_clip(prompts[0])!r})"
        )
        raise RewardError(
            f"reward function {reward_name(fn)!r} raised {type(err).__name__}: {err} {where}{raised_at(fn, err)}"
        )
    return box["out"]


def raised_at(fn: Callable, err: BaseException) -> str:
    """`, at FILE:LINE: `code``: where in the reward's own file the exception was raised (its innermost
    frame there; else the innermost frame of all), so a plug-in's failure names the user's line."""
    frames = traceback.extract_tb(err.__traceback__)
    try:
        own = inspect.getsourcefile(inspect.unwrap(getattr(fn, "func", fn)))
    except TypeError:  # a callable object or a builtin: no source file of its own
        own = None
    mine = [f for f in frames if own is not None and f.filename == own] or frames[-1:]
    if not mine:
        return ""
    frame = mine[-1]
    code = f": `{frame.line.strip()}`" if frame.line else ""
    return f", at {frame.filename}:{frame.lineno}{code}"


def check_columns(fn: Callable, columns: dict[str, Any]) -> None:
    """Every parameter `fn` requires (no default) must be a column it is given: a RewardError that names
    the missing ones and the columns there are, instead of a TypeError from inside the call."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return  # no signature to read: let the call decide
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [
        p.name
        for p in params
        if p.kind in kinds
        and p.default is inspect.Parameter.empty
        and p.name not in CONTRACT_PARAMS
        and p.name not in columns
    ]
    if missing:
        raise RewardError(
            f"reward function {reward_name(fn)!r} takes {', '.join(map(repr, missing))}, which is not a column "
            f"of the batch; its columns: {', '.join(sorted(columns))} (the dataset's, and completion_ids, "
            "num_thoughts, generated_positions; a reward's own settings go in its `args`)"
        )


async def _await(awaitable):
    return await awaitable


def _clip(x: Any, n: int = 80) -> str:
    s = str(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def check_rewards(fn: Callable, out: Any, prompts: list, completions: list) -> list[float]:
    """Validate one function's output; returns floats with NaN for `None`."""
    name = reward_name(fn)
    if not isinstance(out, (list, tuple)):
        raise RewardError(
            f"reward function {name!r} returned {type(out).__name__}; expected a list of float or None"
        )
    if len(out) != len(completions):
        raise RewardError(
            f"reward function {name!r} returned {len(out)} values for {len(completions)} completions; "
            "expected one float or None per completion"
        )
    values = []
    for i, v in enumerate(out):
        if v is None:
            values.append(math.nan)
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy floats count, True does not
            raise RewardError(
                f"reward function {name!r} returned {v!r} ({type(v).__name__}) for sample {i} "
                f"(prompt {_clip(prompts[i])!r}, completion {_clip(completions[i])!r}); expected a float or None"
            )
        try:
            finite = math.isfinite(v)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise RewardError(
                f"reward function {name!r} returned {_clip(v)} for sample {i} "
                f"(prompt {_clip(prompts[i])!r}, completion {_clip(completions[i])!r}); "
                "rewards must be finite (return None when a reward does not apply)"
            )
        values.append(float(v))
    return values


def call_checked(
    fn: Callable, prompts: list, completions: list, columns: dict[str, Any], timeout_s: float
) -> list[float]:
    """`fn` on the batch, every failure a RewardError naming it; floats with NaN for `None`."""
    return check_rewards(fn, _call(fn, prompts, completions, columns, timeout_s), prompts, completions)


def compute_rewards(
    funcs: list[Callable],
    weights: list[float],
    prompts: list,
    completions: list,
    columns: dict[str, list],
    timeout_s: float = 60.0,
    stats: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted reward per completion and each function's own values.

    Returns `(total [N], {name: values [N]})`; a function's `None` is NaN in its values and
    is left out of the sum. A sample no function applies to gets a total of 0. A `stats` dict
    receives every function's call time as `time/reward/<name>_s` and what its `metrics()` (if it
    has one) reports about the call: `reward/<name>/<key>`, or `time/reward/<name>/<key>` for a
    key ending in `_s` (seconds: `time/` is what a bit-for-bit comparison of two runs leaves out).
    """
    per_func: dict[str, torch.Tensor] = {}
    total = torch.zeros(len(completions), dtype=torch.float64)
    for fn, w in zip(funcs, weights, strict=True):
        start = time.perf_counter()
        values = torch.tensor(call_checked(fn, prompts, completions, columns, timeout_s), dtype=torch.float64)
        name = reward_name(fn)
        while name in per_func:  # the same function twice with different args
            name += "'"
        per_func[name] = values
        total += torch.nan_to_num(values, nan=0.0) * w
        if stats is not None:
            stats[f"time/reward/{name}_s"] = time.perf_counter() - start
            own = fn.metrics() if callable(getattr(fn, "metrics", None)) else {}
            stats.update(
                {f"{'time/' if k.endswith('_s') else ''}reward/{name}/{k}": float(v) for k, v in own.items()}
            )
    bad = (~torch.isfinite(total.float())).nonzero()
    if len(bad):  # each finite, but their weighted sum is past what a float holds
        i = int(bad[0])
        named = zip(per_func.items(), weights)
        parts = [f"{name} = {v[i].item():g} (weight {w:g})" for (name, v), w in named]
        raise RewardError(
            f"the weighted sum of the rewards is {total[i].item():g} for sample {i} (prompt "
            f"{_clip(prompts[i])!r}): {', '.join(parts)}; rewards and weights must keep it within a float32"
        )
    return total.float(), {k: v.float() for k, v in per_func.items()}
