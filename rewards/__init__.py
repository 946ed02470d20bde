"""Reward functions with the TRL contract `fn(prompts, completions, **columns) -> list[float | None]`."""

from neuralese.rewards.countdown import countdown_match
from neuralese.rewards.match import digit_credit, exact_match
from neuralese.rewards.numeric import numeric_match
from neuralese.rewards.shaping import format_match, length_penalty, thought_penalty

__all__ = [
    "countdown_match",
    "digit_credit",
    "exact_match",
    "format_match",
    "length_penalty",
    "numeric_match",
    "thought_penalty",
]
