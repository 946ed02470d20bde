"""Latent mode: K thought positions after the prompt, then the answer (Coconut's layout).

Where feedback applies: each of the K thought positions takes the reserved thought token plus the
gated thought from the position before it; the answer positions take plain tokens and read the
thoughts through attention.

TBPTT window k: one live block, the last k thought positions, recomputed step by step; earlier
thoughts are their recorded constants. The answer positions after the block are recomputed in one
parallel pass over its cache, so they read the live thoughts' keys and values.
"""

from __future__ import annotations

from neuralese.modes.base import ThoughtMode


class LatentMode(ThoughtMode):
    uses_thought_token = True
    parallel_tail = True

    @property
    def thought_positions(self) -> int:
        return self.cfg.num_thoughts

    def live_blocks(self, prompt_length: int, length: int, window) -> list[tuple[int, int]]:
        num_thoughts = self.cfg.num_thoughts
        k = num_thoughts if window == "full" else min(int(window), num_thoughts)
        end = prompt_length + num_thoughts
        return [(end - k, end)] if k > 0 else []
