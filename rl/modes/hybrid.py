"""Hybrid mode: a continuous thought fed back at every generated position, beside the token written there.

TBPTT window k: block TBPTT. The generated positions are cut into blocks of k, each recomputed step
by step over the pass-1 cache cut at its start; the first edge of a block starts from a pass-1 hidden
state, so no gradient path crosses more than k edges.
"""

from __future__ import annotations

from neuralese.modes.base import ThoughtMode, blocks_of


class HybridMode(ThoughtMode):
    name = "hybrid"
    feeds_back = True
    feeds_answer = True

    def live_blocks(self, prompt_length: int, length: int, window) -> list[tuple[int, int]]:
        return blocks_of(prompt_length, length, window)
