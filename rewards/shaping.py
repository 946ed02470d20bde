"""Shaping rewards: answer format, length and thought-count penalties.

These do not judge correctness; a recipe adds them to an environment's correctness
reward with a weight (`rewards: [{fn: length_penalty, weight: 0.5, args: {...}}]`).
Besides the dataset columns, the trainer passes `completion_ids` (token ids of each
completion), `num_thoughts` (thought positions each sample used) and
`generated_positions`; the penalties read them when they are there.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from neuralese.rewards.match import completion_text

DEFAULT_FORMAT = r"(?s).*####\s*\S.*"  # anything, then the answer marker and a non-empty answer


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {e}") from None


def format_match(
    prompts: list, completions: list, pattern: str = DEFAULT_FORMAT, **_: Any
) -> list[float | None]:
    """1.0 when the whole completion matches the regular expression `pattern`, else 0.0.

    The default asks for the answer marker `####` followed by an answer.

    >>> format_match(["", ""], ["12*3=36 #### 36", "36"])
    [1.0, 0.0]
    >>> format_match([""], ["Tom is a lempus."], pattern=r"\\w+ is a \\w+\\.")
    [1.0]
    """
    regex = _compiled(pattern)
    return [float(regex.fullmatch(completion_text(c)) is not None) for c in completions]


def length_penalty(
    prompts: list,
    completions: list,
    completion_ids: list[list[int]] | None = None,
    max_tokens: int = 32,
    buffer_tokens: int = 8,
    **_: Any,
) -> list[float | None]:
    """DAPO's soft overlong penalty: 0 up to `max_tokens - buffer_tokens` tokens, then falling
    linearly to -1 at `max_tokens`, and -1 beyond.

    Lengths are `len(completion_ids[i])`; without `completion_ids` (outside the trainer)
    they are whitespace-separated words.

    >>> length_penalty(["", "", ""], ["", "", ""], completion_ids=[[1] * 20, [1] * 28, [1] * 40], max_tokens=32, buffer_tokens=8)
    [0.0, -0.5, -1.0]
    """
    if buffer_tokens < 1 or max_tokens < buffer_tokens:
        raise ValueError(
            f"need 1 <= buffer_tokens <= max_tokens, got buffer_tokens={buffer_tokens}, max_tokens={max_tokens}"
        )
    if completion_ids is not None:
        lengths = [len(ids) for ids in completion_ids]
    else:
        lengths = [len(completion_text(c).split()) for c in completions]
    free = max_tokens - buffer_tokens
    return [max(-1.0, min(0.0, (free - n) / buffer_tokens)) for n in lengths]


def thought_penalty(
    prompts: list,
    completions: list,
    num_thoughts: list[int] | None = None,
    per_thought: float = 0.05,
    free_thoughts: int = 0,
    **_: Any,
) -> list[float | None]:
    """-`per_thought` for every thought position beyond `free_thoughts`: a price on thinking time.

    None (does not apply) for every sample when the trainer passes no `num_thoughts`.

    >>> thought_penalty(["", ""], ["", ""], num_thoughts=[2, 6], per_thought=0.1, free_thoughts=2)
    [0.0, -0.4]
    >>> thought_penalty([""], [""])
    [None]
    """
    if num_thoughts is None:
        return [None] * len(completions)
    excess = [int(k) - free_thoughts for k in num_thoughts]
    return [-per_thought * e if e > 0 else 0.0 for e in excess]
