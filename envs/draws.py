"""Splits of generated tasks: a fixed hash assigns each problem to train or test, and rows are drawn until enough."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import datasets

from neuralese.rewards.match import completion_text

TEST_FRACTION = 0.2
SPLITS = ("train", "test", "validation")


def in_test_split(key: str) -> bool:
    """Fixed assignment of a problem to the test split (about TEST_FRACTION of all problems).

    >>> in_test_split("35,52|1:3") == in_test_split("35,52|1:3")
    True
    """
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
    return h < TEST_FRACTION * (1 << 32)


def draw_split(
    problem: Callable[[random.Random], dict[str, Any]],
    split: str,
    n: int,
    rng_key: str,
    distinct: bool = False,
) -> datasets.Dataset:
    """`n` rows of `problem(rng)` whose prompts belong to `split` (`validation` is the test split);
    `distinct`: no prompt twice. A task too small for `n` such rows is a ValueError."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train', 'test' or 'validation', got {split!r}")
    want_test = split != "train"
    rng = random.Random(rng_key)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(1000 * n + 1000):
        if len(rows) == n:
            break
        row = problem(rng)
        if in_test_split(row["prompt"]) != want_test or (distinct and row["prompt"] in seen):
            continue
        seen.add(row["prompt"])
        rows.append(row)
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} distinct {split} problems of this size exist; ask for fewer")
    return datasets.Dataset.from_list(rows)


def last_symbol_match(completions: list, answer: list[str], keep: Callable[[str], bool]) -> list[float]:
    """1.0 where the last character of a completion that `keep` accepts is the answer, else 0.0."""
    out = []
    for c, a in zip(completions, answer, strict=True):
        found = [ch for ch in completion_text(c) if keep(ch)]
        out.append(float(bool(found) and found[-1] == str(a)))
    return out
