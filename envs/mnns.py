"""Minimum non-negative sum (MNNS): sign each number so the sum is as small as it can be, yet >= 0.

The task of CoT2 (Gozeten et al. 2025, "Continuous Chain of Thought Enables Parallel
Exploration and Reasoning"): with m numbers there are 2^m sign assignments, and a written
chain that commits to one sign at a time must guess right at every step, while a continuous
thought can carry several partial sums at once and decide at the end.

    prompt  "3,1,4?"                          numbers
    answer  "0"                               +3+1-4
    cot     "+3=3,+1=4,-4=0"                  one optimal assignment, with its running sums

Numbers are drawn from 1..`max_number`; the chain of thought is the first optimal
assignment in the order that tries + before - at every position (`written_steps` holds
its steps before the last, each ending in its comma, for the RL curriculum). The answer
check reads the last integer of a completion. Train and test problems are disjoint (a fixed
hash of the numbers picks the split).

    >>> mnns_answer([3, 1, 4])
    0
    >>> make_mnns(count=3, cot=True).dataset("train", 1, seed=0)[0]["completion"].count("=")  # a sum per number
    3
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets

from neuralese.envs.draws import draw_split
from neuralese.rewards.match import completion_text

INTEGER = re.compile(r"-?\d+")


def mnns_match(prompts: list, completions: list, answer: list[str], **_: Any) -> list[float | None]:
    """1.0 when the last integer a completion writes is the answer, else 0.0.

    >>> mnns_match(["..."] * 3, ["+3=3,+1=4,-4=0", "0", "+3=3,-1=2"], answer=["0", "0", "0"])
    [1.0, 1.0, 0.0]
    """
    out = []
    for c, a in zip(completions, answer, strict=True):
        found = INTEGER.findall(completion_text(c))
        out.append(float(bool(found) and found[-1] == str(a)))
    return out


def optimal_signs(numbers: list[int]) -> tuple[int, ...]:
    """The first sign assignment (+ before -, left to right) reaching the minimum non-negative sum."""
    best = None
    for signs in itertools.product((1, -1), repeat=len(numbers)):
        total = sum(s * n for s, n in zip(signs, numbers))
        if total >= 0 and (best is None or total < best[0]):
            best = (total, signs)
    return best[1]


def mnns_answer(numbers: list[int]) -> int:
    """The minimum non-negative signed sum of `numbers` (independent of `optimal_signs`'s order)."""
    sums = {0}
    for n in numbers:
        sums = {s + n for s in sums} | {s - n for s in sums}
    return min(s for s in sums if s >= 0)


@dataclass
class MNNS:
    """MNNS problems with `count` numbers from 1..`max_number`."""

    count: int = 4
    max_number: int = 9
    cot: bool = False
    min_count: int | None = None
    reward_funcs: list = field(default_factory=lambda: [mnns_match])
    check: Callable = mnns_match  # correct when it scores 1

    def __post_init__(self):
        if not 2 <= self.count <= 12:
            raise ValueError(f"count must be from 2 to 12, got {self.count!r}")
        low = self.count if self.min_count is None else self.min_count
        if not 2 <= low <= self.count:
            raise ValueError(f"need 2 <= min_count <= count, got min_count={self.min_count!r}, count={self.count!r}")
        self.min_count = low
        if not 1 <= self.max_number <= 99:
            raise ValueError(f"max_number must be from 1 to 99, got {self.max_number!r}")

    def problem(self, rng: random.Random) -> dict[str, Any]:
        numbers = [rng.randint(1, self.max_number) for _ in range(rng.randint(self.min_count, self.count))]
        signs = optimal_signs(numbers)
        steps, total = [], 0
        for s, n in zip(signs, numbers):
            total += s * n
            steps.append(f"{'+' if s > 0 else '-'}{n}={total},")
        steps[-1] = steps[-1][:-1]  # no comma after the last step
        answer = str(total)
        return {
            "prompt": ",".join(map(str, numbers)) + "?",
            "answer": answer,
            "completion": "".join(steps) if self.cot else answer,
            "written_steps": steps[:-1] if self.cot else [],
            "count": len(numbers),
        }

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        return draw_split(self.problem, split, n, f"mnns-{seed}-{split}-{self.min_count}-{self.count}-{self.max_number}")


def make_mnns(count: int = 4, max_number: int = 9, cot: bool = False, min_count: int | None = None) -> MNNS:
    """Minimum non-negative sum of `count` numbers from 1..`max_number` (`min_count` to `count` when given,
    drawn per problem). `cot`: the stage-0 target is an optimal sign assignment with its running sums,
    the last of them the answer."""
    return MNNS(count=count, max_number=max_number, cot=cot, min_count=min_count)
