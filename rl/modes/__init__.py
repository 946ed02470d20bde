"""Thought modes: where feedback applies, how a rollout builds its inputs, how the recompute lays out
its live blocks. One module per mode, each behind the interface of `neuralese.modes.base.ThoughtMode`:

    off       no feedback: the plain language model (base.py)
    latent    K thought positions after the prompt, then the answer (latent.py)
    hybrid    a thought fed back at every generated position (hybrid.py)
    channel   a persistent state beside the tokens, never softmaxed (channel.py)
    refine    thoughts (or a drafted answer) filled in T parallel Jacobi passes (refine.py)

The three sequential modes share one engine (sequential.py); refine has its own. Each mode declares
what it can do (`ThoughtMode.feeds_back`, `prefix_thoughts`, `thoughts_first`, `window_limit`), so
code outside this package asks a mode, never its name.
"""

from __future__ import annotations

from neuralese.config import NeuraleseConfig
from neuralese.modes.base import ThoughtMode
from neuralese.modes.channel import ChannelMode
from neuralese.modes.hybrid import HybridMode
from neuralese.modes.latent import LatentMode
from neuralese.modes.refine import RefineMode

MODES: dict[str, type[ThoughtMode]] = {
    mode.name: mode for mode in (ThoughtMode, LatentMode, HybridMode, ChannelMode, RefineMode)
}


def get_mode(cfg: NeuraleseConfig) -> ThoughtMode:
    """The mode `cfg.mode` names, bound to `cfg` (which it reads live: the curriculum changes
    `num_thoughts` between stages)."""
    return MODES[cfg.mode](cfg)


__all__ = ["MODES", "ChannelMode", "HybridMode", "LatentMode", "RefineMode", "ThoughtMode", "get_mode"]
