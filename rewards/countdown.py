"""Countdown: is the completion an arithmetic expression that uses each given number once and hits the target?

The completion is model output, so it is parsed by a small recursive-descent parser
(integers, `+ - * /`, `×` and `÷`, parentheses) and never handed to `eval`. Values are
exact fractions: `8/(3-8/3)` is 24, and no float rounding can make a wrong expression
pass. Unary minus is not allowed: every number must be one of the given ones.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from neuralese.rewards.match import completion_text, final_answer

MAX_CHARS = 200  # longer text is not an expression a Countdown answer needs
MAX_DEPTH = 32  # parenthesis nesting; bounds the recursion
TOKEN = re.compile(r"\s*(?:(\d+)|([-+*/()×÷]))")


class ExpressionError(ValueError):
    """The text is not an expression of integers, + - * / and parentheses."""


def tokenize(text: str) -> list[int | str]:
    """Integers and operator characters; anything else is an ExpressionError.

    >>> tokenize("(3 + 5)×2")
    ['(', 3, '+', 5, ')', '*', 2]
    """
    tokens: list[int | str] = []
    pos, text = 0, text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected {text[pos:].lstrip()[:1]!r} at position {pos}")
        number, op = m.groups()
        tokens.append(int(number) if number is not None else {"×": "*", "÷": "/"}.get(op, op))
        pos = m.end()
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)* ; term := atom (('*'|'/') atom)* ; atom := INT | '(' expr ')'."""

    def __init__(self, tokens: list[int | str]):
        self.tokens, self.pos, self.numbers = tokens, 0, []

    def peek(self) -> int | str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> int | str | None:
        token = self.peek()
        self.pos += 1
        return token

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            value = value + self.term(depth) if self.take() == "+" else value - self.term(depth)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.atom(depth)
        while self.peek() in ("*", "/"):
            op, right = self.take(), self.atom(depth)
            if op == "/" and right == 0:
                raise ExpressionError("division by zero")
            value = value * right if op == "*" else value / right
        return value

    def atom(self, depth: int) -> Fraction:
        token = self.take()
        if isinstance(token, int):
            self.numbers.append(token)
            return Fraction(token)
        if token == "(":
            if depth >= MAX_DEPTH:
                raise ExpressionError(f"parentheses nested deeper than {MAX_DEPTH}")
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise ExpressionError("missing ')'")
            return value
        raise ExpressionError(
            f"expected a number or '(', got {token!r}" if token else "expression ends early"
        )


def evaluate(text: str) -> tuple[Fraction, list[int]]:
    """The exact value of `text` and the numbers it uses, in order.

    >>> evaluate("8/(3-8/3)")
    (Fraction(24, 1), [8, 3, 8, 3])
    >>> evaluate("2*-3")
    Traceback (most recent call last):
    ...
    neuralese.rewards.countdown.ExpressionError: expected a number or '(', got '-'
    """
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"longer than {MAX_CHARS} characters")
    parser = _Parser(tokenize(text))
    value = parser.expr(0)
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()!r} after the expression")
    return value, parser.numbers


def solves(text: str, numbers: list[int], target: int) -> bool:
    """True when `text` (optionally followed by `= ...`) uses each of `numbers` once and equals `target`."""
    expression = text.split("=", 1)[0]
    try:
        value, used = evaluate(expression)
    except ExpressionError:
        return False
    return sorted(used) == sorted(numbers) and value == target


def countdown_match(
    prompts: list, completions: list, numbers: list[list[int]], answer: list[str], **_: Any
) -> list[float | None]:
    """1.0 when the completion's final answer is an expression of exactly the given `numbers`
    (each used once) whose value is the target in `answer`, else 0.0.

    >>> countdown_match(["", "", ""], ["(7-5)*12", "7*5-12+1", "24/1"], numbers=[[5, 7, 12]] * 3, answer=["24"] * 3)
    [1.0, 0.0, 0.0]
    """
    return [
        float(solves(final_answer(completion_text(c)), list(nums), int(a)))
        for c, nums, a in zip(completions, numbers, answer, strict=True)
    ]
