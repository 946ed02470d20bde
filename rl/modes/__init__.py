"""Thought modes: where feedback applies, how a rollout builds its inputs, how the recompute lays out
its live blocks. One module per mode, each behind the interface of `neuralese.modes.base.ThoughtMode`:

    off       no feedback: the plain language model (base.py)
    latent    K thought positions after the prompt, then the answer (latent.py)
    hybrid    a thought fed back at every generated position (hybrid.py)
    channel   a persistent state beside the tokens, never softmaxed (channel.py)
    refine    thoughts (or a drafted answer) filled in T parallel Jacobi passes (refine.py)

The three sequential modes share one engine (sequential.py); refine has its own. The modules are
imported when a mode is first asked for: they import the rollout and recompute machinery, which
imports the policy, which asks for its mode.
"""

from __future__ import annotations

from neuralese.config import NeuraleseConfig


def get_mode(cfg: NeuraleseConfig):
    """The mode `cfg.mode` names, bound to `cfg` (which it reads live: the curriculum changes
    `num_thoughts` between stages)."""
    from neuralese.modes import base, channel, hybrid, latent, refine  # at first call: see the docstring

    modes = {"off": base.ThoughtMode, "latent": latent.LatentMode, "hybrid": hybrid.HybridMode,
             "channel": channel.ChannelMode, "refine": refine.RefineMode}  # fmt: skip
    return modes[cfg.mode](cfg)
