"""Reward functions with the TRL contract `fn(prompts, completions, **columns) -> list[float | None]`."""

from rewards.match import exact_match

__all__ = ["exact_match"]
