"""Countdown: combine the given numbers with + - * / to reach a target, each number used once.

A problem draws `count` numbers from 1..`max_number` and then a target from the
integers in 1..`max_target` that an exhaustive search over all expressions of those
numbers reaches, so every problem has a solution; when none is in range the numbers
are drawn again. The search found expression is the stage-0 target (`completion`);
the reward (`neuralese.rewards.countdown.countdown_match`) accepts any correct expression.

The search keeps intermediate values whole (a division must be exact), which makes it
fast; the reward is more lenient and accepts fractional steps such as `8/(3-8/3)`, so
every generated target is reachable under the reward's rules too.

Train and test problems are disjoint: a problem (its sorted numbers and target) belongs
to the test split when a fixed hash of it falls in the lowest fifth.

    >>> row = make_countdown(count=3, max_number=9, max_target=30).dataset("train", 1, seed=0)[0]
    >>> from neuralese.rewards.countdown import solves
    >>> solves(row["completion"], row["numbers"], int(row["answer"]))
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import datasets

from neuralese.envs.files import stable_fraction
from neuralese.rewards.countdown import countdown_match

TEST_FRACTION = 0.2

# How a value was made: a given number (its index), or (op, left mask, left value, right mask, right value).
Recipe = int | tuple[str, int, int, int, int]


def _combine(a: int, b: int):
    """(op, value, swapped) for every way to join a and b with whole results."""
    yield "+", a + b, False
    yield "*", a * b, False
    yield "-", a - b, False
    yield "-", b - a, True
    if b != 0 and a % b == 0:
        yield "/", a // b, False
    if a != 0 and b % a == 0:
        yield "/", b // a, True


def reachable(numbers: list[int]) -> dict[int, dict[int, Recipe]]:
    """For every subset (a bit mask) of `numbers`, the whole values its expressions reach.

    Dynamic programming over subsets: a subset's values come from splitting it in two
    and joining a value of each half, so each value is built once, not once per order.
    """
    table: dict[int, dict[int, Recipe]] = {1 << i: {x: i} for i, x in enumerate(numbers)}
    full = (1 << len(numbers)) - 1
    for mask in sorted(range(1, full + 1), key=lambda m: bin(m).count("1")):
        if mask in table:
            continue
        values: dict[int, Recipe] = {}
        sub = (mask - 1) & mask
        while sub:
            other = mask ^ sub
            if sub < other:  # each unordered split once
                for va in table[sub]:
                    for vb in table[other]:
                        for op, v, swapped in _combine(va, vb):
                            if v not in values:
                                values[v] = (op, other, vb, sub, va) if swapped else (op, sub, va, other, vb)
            sub = (sub - 1) & mask
        table[mask] = values
    return table


def expression(
    table: dict[int, dict[int, Recipe]], numbers: list[int], mask: int, value: int, top: bool = True
) -> str:
    """The expression text behind `table[mask][value]`, with parentheses around every inner operation."""
    recipe = table[mask][value]
    if isinstance(recipe, int):
        return str(numbers[recipe])
    op, lm, lv, rm, rv = recipe
    text = f"{expression(table, numbers, lm, lv, False)}{op}{expression(table, numbers, rm, rv, False)}"
    return text if top else f"({text})"


@dataclass
class Countdown:
    """Countdown problems with `count` numbers from 1..max_number and a target in 1..max_target."""

    count: int = 4
    max_number: int = 25
    max_target: int = 100
    reward_funcs: list = field(default_factory=lambda: [countdown_match])
    check: Callable = countdown_match  # correct when it scores 1

    def __post_init__(self):
        if not isinstance(self.count, int) or not 2 <= self.count <= 6:
            raise ValueError(f"count must be an integer from 2 to 6, got {self.count!r}")
        if self.max_number < 1 or self.max_target < 1:
            raise ValueError(
                f"max_number and max_target must be >= 1, got {self.max_number}, {self.max_target}"
            )

    def problem(self, rng: random.Random) -> tuple[list[int], int, str]:
        """(numbers, target, one solution)."""
        while True:
            numbers = [rng.randint(1, self.max_number) for _ in range(self.count)]
            full = (1 << self.count) - 1
            table = reachable(numbers)
            targets = sorted(v for v in table[full] if 1 <= v <= self.max_target)
            if targets:
                target = rng.choice(targets)
                return numbers, target, expression(table, numbers, full, target)

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        if split not in ("train", "test", "validation"):
            raise ValueError(f"split must be 'train', 'test' or 'validation', got {split!r}")
        want_test = split != "train"
        rng = random.Random(f"countdown-{seed}-{split}-{self.count}-{self.max_number}-{self.max_target}")
        rows: dict[str, list] = {"prompt": [], "answer": [], "completion": [], "numbers": []}
        while len(rows["prompt"]) < n:
            numbers, target, solution = self.problem(rng)
            if (stable_fraction(f"{sorted(numbers)}->{target}") < TEST_FRACTION) != want_test:
                continue
            rows["prompt"].append(f"Use {' '.join(map(str, numbers))} to make {target}:")
            rows["answer"].append(str(target))
            rows["completion"].append(solution)
            rows["numbers"].append(numbers)
        return datasets.Dataset.from_dict(rows)


def make_countdown(count: int = 4, max_number: int = 25, max_target: int = 100) -> Countdown:
    """Countdown with `count` numbers drawn from 1..`max_number` and a reachable target in 1..`max_target`."""
    return Countdown(count=count, max_number=max_number, max_target=max_target)
