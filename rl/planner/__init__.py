"""A planner over codes: a policy that writes a plan, and a token model that writes the answer from it.

    env.py       the task seen as plans and answers (`env.name: neuralese.planner:planned`): RL on the
                 planner scores the answer a frozen decoder writes after `prompt + plan`; the views
                 `plan` and `decode` are the two models' stage 0; `plans: shuffled` is the control
    pretrain.py  `neuralese planner pretrain RECIPE`: stage 0 of the decoder and of the planner

The planner is any policy the trainer takes (a dense-token model over a codec's codes writes its plan in
fewer positions); RL, rollout = recompute, export and resume are the trainer's own, since the plan is
the policy's whole action and the decoder belongs to the environment. docs/planner.md walks through it.
"""

from neuralese.planner.env import Planned, planned
from neuralese.planner.pretrain import pretrain_planner

__all__ = ["Planned", "planned", "pretrain_planner"]
