"""Reward functions with the TRL contract `fn(prompts, completions, **columns) -> list[float | None]`."""

from rewards.countdown import countdown_match
from rewards.match import exact_match
from rewards.numeric import numeric_match
from rewards.shaping import format_match, length_penalty, thought_penalty

__all__ = [
    "countdown_match",
    "exact_match",
    "format_match",
    "length_penalty",
    "numeric_match",
    "thought_penalty",
]
