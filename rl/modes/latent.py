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
    name = "latent"
    feeds_back = True
    uses_thought_token = True
    parallel_tail = True
    prefix_thoughts = True

    @property
    def thoughts_first(self) -> bool:
        return True

    @property
    def thought_positions(self) -> int:
        return self.cfg.num_thoughts

    def window_limit(self) -> tuple[str, int, str]:
        return "neuralese.num_thoughts", self.cfg.num_thoughts, ""

    def live_blocks(self, prompt_length: int, length: int, window) -> list[tuple[int, int]]:
        k = self.live_edges(window)
        end = prompt_length + self.cfg.num_thoughts
        return [(end - k, end)] if k > 0 else []
