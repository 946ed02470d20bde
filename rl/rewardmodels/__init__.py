"""Reward models as rewards: trained here, asked as judges, and chained in cascades.

- `score`: a local sequence classifier with one logit as a TRL-contract reward (`fn: reward_model`).
- `judge`: a local causal LM asked a templated question, scored by p(yes) (`fn: judge`).
- `cascade`: stages that each answer where they can, the next scoring the rest (`fn: cascade`).
- `pairs`, `train`: `neuralese reward-model train RECIPE.yaml` builds preference pairs from the
  policy's own samples (or a file) and trains with TRL's RewardTrainer, then the gears after it.
- `report`: `neuralese reward-model report RUN...`, the reward beside the true accuracy over steps.

Recipes name them in `rewards` like any reward function: importing this package registers
`reward_model`, `judge` and `cascade` with neuralese.rewards.combine, which builds them with the
policy's device; the trainer's loop does not know they are models.
"""

from neuralese.rewardmodels.cascade import Cascade
from neuralese.rewardmodels.judge import Judge
from neuralese.rewardmodels.score import RewardModel

__all__ = ["Cascade", "Judge", "RewardModel"]
