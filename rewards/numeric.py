"""Numeric answers: find the final number in free text and compare it by value.

Models write numbers the way people do: `$1,080`, `18.00`, `-3`, `50%`, `#### 18`
followed by more words. `final_number` takes the first number after the last `####`
marker when there is one (GSM8K's own answer format), else the last number in the
text, and returns it as an exact `Decimal`, so `18.00` equals `18` and no float
rounding is involved. Commas count only as thousands separators (`1,080`); a list
like `1,2,3` reads as separate numbers.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from neuralese.rewards.match import ANSWER_MARK, completion_text

# An optional sign (not a minus between two operands: "16-3" is 16 and 3), an optional
# currency sign, digits with optional thousands groups, an optional decimal part.
NUMBER = re.compile(r"(?<![\w.])([-−])?[$€£]?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")


def parse_number(text: str) -> Decimal | None:
    """`text` as a Decimal after dropping `$`, thousands commas and spaces; None if it is not a number.

    >>> parse_number("1,080"), parse_number(" -10 "), parse_number("abc")
    (Decimal('1080'), Decimal('-10'), None)
    """
    cleaned = text.strip().replace(",", "").replace("$", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def final_number(text: str) -> Decimal | None:
    """The answer number of a completion, or None when it has none.

    >>> final_number("She makes 9 * 2 = $18 every day.\\n#### 18")
    Decimal('18')
    >>> final_number("#### $1,080.00 in total, after 3 weeks")
    Decimal('1080.00')
    >>> final_number("16 - 3 - 4 = 9 eggs, so the answer is 9.")
    Decimal('9')
    >>> final_number("no number here") is None
    True
    """
    if ANSWER_MARK in text:
        match = NUMBER.search(text.rsplit(ANSWER_MARK, 1)[1])
    else:
        matches = list(NUMBER.finditer(text))
        match = matches[-1] if matches else None
    if match is None:
        return None
    sign, digits = match.groups()
    return Decimal(("-" if sign else "") + digits.replace(",", ""))


def numeric_match(prompts: list, completions: list, answer: list[str], **_: Any) -> list[float | None]:
    """1.0 when the completion's final number equals the number in `answer` (by value), else 0.0.

    >>> numeric_match(["", "", "", ""], ["#### 18", "The total is $18.00.", "18 - 1 = 17", "none"], answer=["18"] * 4)
    [1.0, 1.0, 0.0, 0.0]
    """
    out: list[float | None] = []
    for c, a in zip(completions, answer, strict=True):
        expected = parse_number(str(a))
        if expected is None:
            raise ValueError(f"answer {a!r} is not a number")
        got = final_number(completion_text(c))
        out.append(float(got is not None and got == expected))
    return out
