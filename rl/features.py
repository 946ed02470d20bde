"""The features that register themselves with the core, loaded together.

Importing this module makes every registered extension available:

    cross-model thinking   a policy kind (neuralese.kinds, `cross`): neuralese.translate.cross
    dense-token models     a tokenizer loader for codec folders (neuralese.models): neuralese.codec.dense
    reward models          `reward_model`, `judge`, `cascade` in a recipe's rewards: neuralese.rewardmodels

The core never imports a feature; the builder of runs (neuralese.build, and through it the trainer,
`neuralese.load_policy` and every command) imports this module, so a run or a folder that needs a
feature finds it registered.
"""

from __future__ import annotations

from neuralese import rewardmodels
from neuralese.codec import dense
from neuralese.translate import cross

__all__ = ["cross", "dense", "rewardmodels"]
