"""The `planner` section: `neuralese planner pretrain`, stage 0 of a planner over codes and of its decoder
(neuralese.planner). The run's environment (`env.name: neuralese.planner:planned`) names the task, the
decoder's folder and how many tokens it writes; this section says how the decoder's stage 0 differs from
the planner's, which takes `pretrain` as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralese.ranges import PositiveFloat, PositiveInt


@dataclass
class PlannerConfig:
    """Stage 0 of the decoder: the run's `model.tiny` and `pretrain`, without `model.codec` (it reads and
    writes the task's own tokens), with these in place of `pretrain`'s own where set."""

    decoder_max_steps: PositiveInt | None = None
    """The decoder's stage-0 steps; None: `pretrain.max_steps`."""
    decoder_learning_rate: PositiveFloat | None = None
    """The decoder's stage-0 learning rate; None: `pretrain.learning_rate`."""
