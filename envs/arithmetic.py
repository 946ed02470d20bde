"""Arithmetic environments: multi-digit addition and multiplication.

Numbers are written least-significant digit first, as in the implicit chain-of-thought
work of Deng et al. (2023): the model then produces the answer in the order a carry
propagates. `1234 + 5678` is the prompt `4321+8765=` and the answer `2196`
(6912 reversed).

Stage-0 label noise (`teacher_drop_final_carry`) models an imperfect teacher: the
supervised target of an addition whose sum has a final carry drops that digit with the
given probability. Only the `completion` column (the stage-0 target) is affected; the
`answer` column and therefore every reward always hold the true result. Supervised
training on such labels caps greedy accuracy near the share of sums without a final
carry, while the right answer stays in the model's samples: room for RL.

Train and test problems are disjoint: a problem belongs to the test split when a fixed
hash of its operands falls in the lowest fifth.

    >>> env = make_addition(digits=2)
    >>> row = env.dataset("train", 1, seed=0)[0]
    >>> a, b = (int(x[::-1]) for x in row["prompt"].rstrip("=").split("+"))
    >>> int(row["answer"][::-1]) == a + b
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import datasets

from neuralese.rewards.match import ANSWER_MARK, exact_match

TEST_FRACTION = 0.2


def rev(n: int) -> str:
    """Decimal digits of `n`, least significant first."""
    return str(n)[::-1]


def in_test_split(a: int, b: int) -> bool:
    """Fixed assignment of a problem to the test split (about TEST_FRACTION of all problems)."""
    h = ((a * 1_000_003) ^ (b * 2_654_435_761)) * 0x9E3779B1 % (1 << 32)
    return h < TEST_FRACTION * (1 << 32)


def multiplication_cot(a: int, b: int) -> str:
    """Implicit-CoT target in the format of Deng et al. (2023): the partial product of `a` by each
    digit of `b` (shifted), with the running sum in parentheses after every partial but the
    first and the last, then `####` and the product. All numbers least-significant digit first;
    the j-th partial and its running sum are zero-padded to len(a) + 1 + j digits, as in their
    data, so a digit's position in the text fixes its place value.

    Departure: the product after `####` is not padded (theirs is, to len(a) + len(b) digits),
    so the final answer equals the `answer` column and the non-CoT target.

    >>> multiplication_cot(12, 34)  # 12*4 = 48, 12*30 = 360, 48 + 360 = 408
    '840+0630####804'
    >>> multiplication_cot(5431, 3918)  # a line of their 4x4 data, without the spaces
    '84434+013450(857790)+0097884(8565894)+00039261####85687212'
    """
    width = len(str(a)) + 1
    parts, total = [], 0
    digits = [int(d) for d in reversed(str(b))]
    for j, d in enumerate(digits):
        partial = a * d * 10**j
        total += partial
        text = rev(partial).ljust(width + j, "0")
        if 0 < j < len(digits) - 1:
            text += f"({rev(total).ljust(width + j, '0')})"
        parts.append(text)
    return "+".join(parts) + "####" + rev(a * b)


def cot_steps(chain: str) -> list[str]:
    """The written steps of a multiplication chain: each partial product (with its running sum and
    the `+` after it), the pieces the chain begins with before `####`.

    >>> cot_steps('840+0630####804')
    ['840+', '0630']
    """
    parts = chain.split(ANSWER_MARK, 1)[0].split("+")
    return [p + "+" for p in parts[:-1]] + parts[-1:]


@dataclass
class Arithmetic:
    """Problems `a op b` with `digits_a`- and `digits_b`-digit operands."""

    op: str
    digits_a: int
    digits_b: int
    teacher_drop_final_carry: float = 0.0
    cot: bool = False
    reward_funcs: list = field(default_factory=lambda: [exact_match])
    check: Callable = exact_match  # correct when it scores 1

    def __post_init__(self):
        if self.op not in "+*":
            raise ValueError(f"op must be '+' or '*', got {self.op!r}")
        for name in ("digits_a", "digits_b"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 9:
                raise ValueError(f"{name} must be an integer from 1 to 9, got {value!r}")
        if not 0.0 <= self.teacher_drop_final_carry <= 1.0:
            raise ValueError(
                f"teacher_drop_final_carry must be in [0, 1], got {self.teacher_drop_final_carry!r}"
            )

    def _operand(self, rng: random.Random, digits: int) -> int:
        return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        if split not in ("train", "test", "validation"):
            raise ValueError(f"split must be 'train', 'test' or 'validation', got {split!r}")
        want_test = split != "train"
        rng = random.Random(f"{seed}-{split}-{self.op}-{self.digits_a}-{self.digits_b}")
        rows = {"prompt": [], "answer": [], "completion": [], "written_steps": []}
        while len(rows["prompt"]) < n:
            a, b = self._operand(rng, self.digits_a), self._operand(rng, self.digits_b)
            if in_test_split(a, b) != want_test:
                continue
            result = a + b if self.op == "+" else a * b
            answer = rev(result)
            target = answer
            if self.cot:
                target = multiplication_cot(a, b)
            has_final_carry = self.op == "+" and len(str(result)) > max(len(str(a)), len(str(b)))
            if has_final_carry and rng.random() < self.teacher_drop_final_carry:
                target = answer[:-1]
            rows["prompt"].append(f"{rev(a)}{self.op}{rev(b)}=")
            rows["answer"].append(answer)
            rows["completion"].append(target)
            rows["written_steps"].append(cot_steps(target) if self.cot else [])
        return datasets.Dataset.from_dict(rows)


def _sizes(digits: int, digits_b: int | None) -> tuple[int, int]:
    """Operand sizes, checked under the names a recipe uses (`env.args.digits`, `env.args.digits_b`)."""
    for name, value in (("digits", digits), ("digits_b", digits_b)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 9
        ):
            raise ValueError(f"{name} must be an integer from 1 to 9, got {value!r}")
    return digits, digits if digits_b is None else digits_b


def make_addition(
    digits: int = 4, digits_b: int | None = None, teacher_drop_final_carry: float = 0.0
) -> Arithmetic:
    """Addition of a `digits`-digit and a `digits_b`-digit number (default: the same size)."""
    return Arithmetic("+", *_sizes(digits, digits_b), teacher_drop_final_carry=teacher_drop_final_carry)


def make_multiplication(digits: int = 2, digits_b: int | None = None, cot: bool = False) -> Arithmetic:
    """Multiplication of a `digits`-digit by a `digits_b`-digit number (2x2 up to 9x9)."""
    return Arithmetic("*", *_sizes(digits, digits_b), cot=cot)
