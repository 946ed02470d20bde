"""Answer-matching rewards (TRL contract: `fn(prompts, completions, **columns) -> list[float | None]`)."""

from __future__ import annotations

from typing import Any

ANSWER_MARK = "####"


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of the last message of a conversation."""
    if isinstance(completion, list):
        return str(completion[-1].get("content", "")) if completion else ""
    return str(completion)


def final_answer(text: str) -> str:
    """The part after the last `####` if there is one, else the whole text; stripped.

    >>> final_answer("84+063(804)####804")
    '804'
    >>> final_answer(" 2196 ")
    '2196'
    """
    if ANSWER_MARK in text:
        text = text.rsplit(ANSWER_MARK, 1)[1]
    return text.strip()


def exact_match(prompts: list, completions: list, answer: list[str], **_: Any) -> list[float | None]:
    """1.0 when the completion's final answer equals the `answer` column exactly, else 0.0.

    >>> exact_match(["12+34="], ["46"], answer=["46"])
    [1.0]
    >>> exact_match(["12+34=", "12+34="], ["cot####46", "47"], answer=["46", "46"])
    [1.0, 0.0]
    """
    return [
        float(final_answer(completion_text(c)) == str(a).strip())
        for c, a in zip(completions, answer, strict=True)
    ]


def digit_credit(prompts: list, completions: list, answer: list[str], **_: Any) -> list[float | None]:
    """Partial credit: the share of characters written right in place, over the longer of answer and
    completion. Exact match earns 1, and a policy that gets no answer whole (a weak dense-token model)
    still gets a signal that rises as it learns digits.

    >>> digit_credit(["12+34="], ["46"], answer=["46"])
    [1.0]
    >>> digit_credit(["12+34=", "12+34="], ["47", "4"], answer=["46", "46"])
    [0.5, 0.5]
    """
    scores = []
    for completion, right in zip(completions, answer, strict=True):
        text, right = completion_text(completion).strip(), str(right)
        scores.append(sum(a == b for a, b in zip(text, right)) / max(len(text), len(right), 1))
    return scores
