"""Minimum non-negative sum (MNNS): sign each number so the sum is as small as it can be, yet >= 0.

The task of CoT2 (Gozeten et al. 2025, "Continuous Chain of Thought Enables Parallel
Exploration and Reasoning"): with m numbers there are 2^m sign assignments, and a written
chain that commits to one sign at a time must guess right at every step, while a continuous
thought can carry several partial sums at once and decide at the end.

Two formats. Text (the default), one character a piece:

    prompt  "3,1,4?"                          numbers
    answer  "0"                               +3+1-4
    cot     "+3=3,+1=4,-4=0"                  one optimal assignment, with its running sums

Values (`values: true`, CoT2's): only the partial sums are written, each a signed whole number,
so with a tokenizer that makes a number one piece (`model.tiny.number_pieces`) each step is one
position, as a thought is. m numbers give m - 1 partial sums and the answer:

    prompt  "3,1,4,2?"
    cot     "+3+2-2+0"                        partial sums 3, 2, -2 (+3-1-4), then the answer 0 (+2)
    answer only "+0"

The written path (`cot: true`) is the first optimal assignment in the order that tries + before -
at every position (`path: optimal`, CoT2's discrete baseline), or (`path: sampled`, values only)
one drawn uniformly per row from all 2^m sign assignments, or from the `beams` best ones (CoT2's
beams: the assignments with a non-negative sum, smallest first), with the true answer last, so a
model trained on it learns the distribution over reachable partial sums at each step.
`written_steps` holds the steps before the last (the RL curriculum's pieces).

Splits. `split: hash` draws numbers from 1..`max_number` and a fixed hash of the prompt picks train
or test. `split: multiset` is CoT2's: every sequence of `count` numbers, grouped by their sorted
multiset; the groups are shuffled with Python's `random.Random(split_seed)` in order of first
appearance and the first 80% are train, so no permutation of a test problem is ever trained on.
With seed 42 (CoT2's) and 4 numbers from 1..9 this is CoT2's split of the 6,561 sequences.
`train_part` keeps a share `rl_share` of the train multisets apart: `stage0` is the rest, `rl`
that share (RL prompts a stage-0 model has not memorised), `all` both. `rl_share: 0` keeps nothing
apart: every part is the whole train split (CoT2's own regime, RL on the problems stage 0 learned).

    >>> mnns_answer([3, 1, 4])
    0
    >>> make_mnns(count=3, cot=True).dataset("train", 1, seed=0)[0]["completion"].count("=")  # a sum per number
    3
    >>> partial_sums([3, 1, 4, 2], optimal_signs([3, 1, 4, 2]))
    [3, 2, -2, 0]
    >>> MNNS(values=True, cot=True).row([3, 1, 4, 2], random.Random(0))["completion"]
    '+3+2-2+0'
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets

from neuralese.envs.draws import draw_split
from neuralese.rewards.match import completion_text

INTEGER = re.compile(r"-?\d+")
TRAIN_SHARE = 0.8  # CoT2: 80% of the multisets train, 20% test
PATHS = ("optimal", "sampled")
SPLITS = ("hash", "multiset")
TRAIN_PARTS = ("all", "stage0", "rl")


def mnns_match(prompts: list, completions: list, answer: list[str], **_: Any) -> list[float | None]:
    """1.0 when the last integer a completion writes is the answer, else 0.0.

    >>> mnns_match(["..."] * 4, ["+3=3,+1=4,-4=0", "0", "+3=3,-1=2", "+3-2+0"], answer=["0", "0", "0", "0"])
    [1.0, 1.0, 0.0, 1.0]
    """
    out = []
    for c, a in zip(completions, answer, strict=True):
        found = INTEGER.findall(completion_text(c))
        out.append(float(bool(found) and found[-1] == str(a)))
    return out


def sign_paths(count: int) -> list[tuple[int, ...]]:
    """All 2^count sign assignments, + before - at every position."""
    return list(itertools.product((1, -1), repeat=count))


def partial_sums(numbers: list[int], signs: tuple[int, ...]) -> list[int]:
    """The running sums of `numbers` signed by `signs` (the last one is the total)."""
    return list(itertools.accumulate(s * n for s, n in zip(signs, numbers)))


def optimal_signs(numbers: list[int]) -> tuple[int, ...]:
    """The first sign assignment (+ before -, left to right) reaching the minimum non-negative sum."""
    best = None
    for signs in sign_paths(len(numbers)):
        total = sum(s * n for s, n in zip(signs, numbers))
        if total >= 0 and (best is None or total < best[0]):
            best = (total, signs)
    return best[1]


def best_paths(numbers: list[int], beams: int) -> list[tuple[int, ...]]:
    """CoT2's beams: the `beams` sign assignments with a non-negative total, smallest total first
    (ties by the sign tuple, - before +, as CoT2 sorts them)."""
    valid = [(sum(s * n for s, n in zip(signs, numbers)), signs) for signs in sign_paths(len(numbers))]
    valid = sorted(v for v in valid if v[0] >= 0)
    return [signs for _, signs in valid[:beams]]


def mnns_answer(numbers: list[int]) -> int:
    """The minimum non-negative signed sum of `numbers` (independent of `optimal_signs`'s order)."""
    sums = {0}
    for n in numbers:
        sums = {s + n for s in sums} | {s - n for s in sums}
    return min(s for s in sums if s >= 0)


def path_distribution(numbers: list[int], step: int) -> dict[int, float]:
    """The partial sum after the first `step` numbers (1-based) over all 2^step sign assignments, each
    equally likely: CoT2's continuous supervision target (a sum reached by several paths adds up).

    >>> path_distribution([1, 1], 2)
    {2: 0.25, 0: 0.5, -2: 0.25}
    """
    sums = [sum(s * n for s, n in zip(signs, numbers)) for signs in sign_paths(step)]
    return {value: k / len(sums) for value, k in Counter(sums).items()}


def step_distributions(numbers: list[int]) -> list[dict[int, float]]:
    """`path_distribution` at every step before the last, at once (sorted by value).

    >>> step_distributions([1, 1, 5])
    [{-1: 0.5, 1: 0.5}, {-2: 0.25, 0: 0.5, 2: 0.25}]
    """
    dist, out = {0: 1.0}, []
    for n in numbers[:-1]:
        ahead: dict[int, float] = {}
        for value, p in dist.items():
            for v in (value + n, value - n):
                ahead[v] = ahead.get(v, 0.0) + p / 2
        dist = dict(sorted(ahead.items()))
        out.append(dist)
    return out


@functools.lru_cache(maxsize=1 << 17)
def reachable_columns(numbers: tuple[int, ...]) -> tuple[list[list[str]], list[list[float]]]:
    """A values-format row's `reachable` (each step's partial sums as written) and `reachable_weights`."""
    spread = step_distributions(list(numbers))
    return [[value_text(v) for v in step] for step in spread], [list(step.values()) for step in spread]


def value_text(value: int) -> str:
    """A value as the values format writes it: always signed, so values need no separator."""
    return f"{value:+d}"


@functools.lru_cache(maxsize=8)
def multiset_split(count: int, max_number: int, seed: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """CoT2's split: every sequence of `count` numbers from 1..`max_number`, in itertools.product order,
    assigned to train or test by its sorted multiset; the multisets, in order of first appearance, are
    shuffled with random.Random(seed) and the first 80% are train. Returns the sequences of each split
    (product order) and the train multisets (shuffled order, for `train_part`)."""
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for seq in itertools.product(range(1, max_number + 1), repeat=count):
        groups.setdefault(tuple(sorted(seq)), []).append(seq)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    cut = int(TRAIN_SHARE * len(keys))
    train_keys, test_keys = set(keys[:cut]), set(keys[cut:])
    return {
        "train": tuple(s for k, seqs in groups.items() if k in train_keys for s in seqs),
        "test": tuple(s for k, seqs in groups.items() if k in test_keys for s in seqs),
        "train_multisets": tuple(keys[:cut]),
    }


@dataclass
class MNNS:
    """MNNS problems with `count` numbers from 1..`max_number` (module docstring: formats and splits)."""

    count: int = 4
    max_number: int = 9
    cot: bool = False
    min_count: int | None = None
    values: bool = False
    path: str = "optimal"
    beams: int | None = None
    split: str = "hash"
    split_seed: int = 42
    train_part: str = "all"
    rl_share: float = 0.25
    reward_funcs: list = field(default_factory=lambda: [mnns_match])
    check: Callable = mnns_match  # correct when it scores 1

    def __post_init__(self):
        if not 2 <= self.count <= 12:
            raise ValueError(f"count must be from 2 to 12, got {self.count!r}")
        low = self.count if self.min_count is None else self.min_count
        if not 2 <= low <= self.count:
            raise ValueError(
                f"need 2 <= min_count <= count, got min_count={self.min_count!r}, count={self.count!r}"
            )
        self.min_count = low
        if not 1 <= self.max_number <= 99:
            raise ValueError(f"max_number must be from 1 to 99, got {self.max_number!r}")
        for name, value, allowed in (
            ("path", self.path, PATHS),
            ("split", self.split, SPLITS),
            ("train_part", self.train_part, TRAIN_PARTS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.path == "sampled" and not self.values:
            raise ValueError("path 'sampled' writes partial sums only: it needs values: true")
        if self.beams is not None and not 1 <= self.beams <= 2**self.count:
            raise ValueError(f"beams must be from 1 to 2^count = {2**self.count}, got {self.beams!r}")
        if self.split == "multiset":
            if self.min_count != self.count:
                raise ValueError("split 'multiset' enumerates sequences of one length: leave min_count unset")
            if self.max_number**self.count > 2_000_000:
                raise ValueError(
                    f"split 'multiset' enumerates max_number^count = {self.max_number**self.count} "
                    "sequences; keep it at 2,000,000 or fewer"
                )
        elif self.train_part != "all":
            raise ValueError("train_part splits CoT2's multisets: it needs split: multiset")
        if not 0 <= self.rl_share < 1:
            raise ValueError(f"rl_share must be in [0, 1), got {self.rl_share!r}")

    def signs(self, numbers: list[int], rng: random.Random) -> tuple[int, ...]:
        """The written sign path of one row."""
        if self.path == "optimal":
            return optimal_signs(numbers)
        pool = sign_paths(len(numbers)) if self.beams is None else best_paths(numbers, self.beams)
        return rng.choice(pool)

    def row(self, numbers: list[int], rng: random.Random) -> dict[str, Any]:
        answer, signs = mnns_answer(numbers), self.signs(numbers, rng)
        sums = partial_sums(numbers, signs)
        if self.values:
            steps = [value_text(s) for s in sums[:-1]] + [value_text(answer)]
        else:
            signed = [f"{'+' if s > 0 else '-'}{n}" for s, n in zip(signs, numbers)]
            steps = [f"{step}={total}," for step, total in zip(signed, sums)]
            steps[-1] = steps[-1][:-1]  # no comma after the last step
        row = {
            "prompt": ",".join(map(str, numbers)) + "?",
            "answer": str(answer),
            "completion": "".join(steps) if self.cot else steps[-1] if self.values else str(answer),
            "written_steps": steps[:-1] if self.cot else [],
            "count": len(numbers),
            "numbers": list(numbers),
        }
        if self.values:  # each step before the answer: the partial sums it can reach, each one token
            row["reachable"], row["reachable_weights"] = reachable_columns(tuple(numbers))
        return row

    def problem(self, rng: random.Random) -> dict[str, Any]:
        numbers = [rng.randint(1, self.max_number) for _ in range(rng.randint(self.min_count, self.count))]
        return self.row(numbers, rng)

    def sequences(self, split: str) -> tuple[tuple[int, ...], ...]:
        """The sequences of a split of CoT2's multiset split (train narrowed to `train_part`)."""
        parts = multiset_split(self.count, self.max_number, self.split_seed)
        if split != "train":
            return parts["test"]
        if self.train_part == "all" or self.rl_share == 0:  # nothing kept apart
            return parts["train"]
        multisets = parts["train_multisets"]
        rl = set(multisets[: round(self.rl_share * len(multisets))])
        keep = self.train_part == "rl"
        return tuple(s for s in parts["train"] if (tuple(sorted(s)) in rl) == keep)

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        if self.split == "hash":
            return draw_split(
                self.problem, split, n, f"mnns-{seed}-{split}-{self.min_count}-{self.count}-{self.max_number}"
            )
        if split not in ("train", "test", "validation"):
            raise ValueError(f"split must be 'train', 'test' or 'validation', got {split!r}")
        rng = random.Random(f"mnns-multiset-{seed}-{split}")
        seqs = list(self.sequences(split))
        if split == "train":  # shuffled, and cycled with fresh sampled paths when n exceeds the split
            order = []
            while len(order) < n:
                rng.shuffle(seqs)
                order += seqs
            seqs = order[:n]
        else:  # one fixed order for every seed, so that n < all is the same sample of test problems everywhere
            random.Random("mnns-multiset-test-order").shuffle(seqs)
        return datasets.Dataset.from_list([self.row(list(s), rng) for s in seqs[:n]])


def make_mnns(
    count: int = 4,
    max_number: int = 9,
    cot: bool = False,
    min_count: int | None = None,
    values: bool = False,
    path: str = "optimal",
    beams: int | None = None,
    split: str = "hash",
    split_seed: int = 42,
    train_part: str = "all",
    rl_share: float = 0.25,
) -> MNNS:
    """Minimum non-negative sum of `count` numbers from 1..`max_number` (`min_count` to `count` when given,
    drawn per problem). `cot`: the stage-0 target is a sign path with its running sums, the answer last.
    `values`: only the partial sums, signed numbers without separators (one position each with
    `model.tiny.number_pieces`). `path`: `optimal` or `sampled` (uniform over all 2^count paths, or the
    `beams` best). `split`: `hash` or `multiset` (CoT2's, seeded by `split_seed`; `train_part` `stage0` /
    `rl` / `all` of its train multisets, `rl` being a share `rl_share` of them)."""
    return MNNS(
        count=count,
        max_number=max_number,
        cot=cot,
        min_count=min_count,
        values=values,
        path=path,
        beams=beams,
        split=split,
        split_seed=split_seed,
        train_part=train_part,
        rl_share=rl_share,
    )
