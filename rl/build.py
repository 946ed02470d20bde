"""Building the trainable pieces of a run from its config: policy (with LoRA), reference, value head, rewards.

A policy other than the plain one (cross-model thinking: one model reading another's thoughts) is a
registered kind (neuralese.kinds): the run's config names the kind it needs (`RunConfig.policy_kind`),
and the feature that provides it registers a builder there. `check_run` holds a config to everything
its thought mode and policy kind can do. Building a run is where every registered feature is loaded
(neuralese.features): cross-model thinking, dense-token tokenizers, reward models.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from neuralese import features  # noqa: F401  (every feature registers itself: a run may need any)
from neuralese.config import NeuraleseConfig, RunConfig, validate
from neuralese.envs import Environment
from neuralese.kinds import policy_kind
from neuralese.models import language_model
from neuralese.modes import get_mode
from neuralese.policy import NeuralesePolicy
from neuralese.rewards.combine import resolve_reward


class ValueHead(nn.Module):
    """PPO critic: a linear map from the policy's last hidden state to a scalar value.

    Starts at zero, so the first advantages are the returns themselves.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, L, D] -> [B, L]: values[:, t] scores the state before the token at t (read at t-1)."""
        v = self.linear(hidden.float()).squeeze(-1)  # [B, L]
        return torch.cat([v.new_zeros(v.shape[0], 1), v[:, :-1]], dim=1)


def thought_token(cfg: RunConfig) -> str | None:
    """The reserved thought token the run's mode reads at its thought positions (None: it has none)."""
    return cfg.neuralese.thought_token if get_mode(cfg.neuralese).uses_thought_token else None


def check_run(cfg: RunConfig, source: str = "<config>") -> None:
    """Every rule a run's config must meet: its sections' (neuralese.config.validate), its thought
    mode's (`ThoughtMode.check`) and its policy kind's."""
    validate(cfg, source)
    get_mode(cfg.neuralese).check(cfg, source)
    kind = policy_kind(cfg)
    if kind is not None and kind.check is not None:
        kind.check(cfg, source)


def build_policy(cfg: RunConfig, device: torch.device | str) -> NeuralesePolicy:
    """The model at `model.path`, LoRA-wrapped when `model.lora.r > 0`, with a fresh feedback adapter; or
    the policy of the kind the config names (`PolicyKind`)."""
    kind = policy_kind(cfg)
    if kind is not None:
        return kind.build(cfg, device)
    model, tokenizer = language_model(cfg.model, device, thought_token(cfg))
    # A copy: the curriculum changes the policy's number of thoughts, never the run's config.
    return NeuralesePolicy(model, tokenizer, dataclasses.replace(cfg.neuralese)).to(device)


def build_reference(cfg: RunConfig, policy: NeuralesePolicy) -> NeuralesePolicy | None:
    """The KL reference: None when beta = 0 or with LoRA (the policy itself with adapters and
    feedback off serves, with no copy in memory); otherwise a frozen copy with feedback off."""
    if cfg.rl.beta == 0 or cfg.model.lora.r > 0:
        return None
    frozen = copy.deepcopy(policy.model).eval().requires_grad_(False)
    return NeuralesePolicy(frozen, policy.tokenizer, NeuraleseConfig(mode="off"))


def build_rewards(
    cfg: RunConfig, env: Environment, device: torch.device | str = "cpu"
) -> tuple[list[Callable], list[float]]:
    """Reward functions and weights: the recipe's `rewards`, or the environment's own with weight 1.
    Reward models and judges are loaded on `device` (the policy's)."""
    if cfg.rewards is None:
        return list(env.reward_funcs), [1.0] * len(env.reward_funcs)
    funcs = [
        resolve_reward(r.fn, r.args, key=f"rewards[{i}].fn", device=device) for i, r in enumerate(cfg.rewards)
    ]
    return funcs, [r.weight for r in cfg.rewards]


def param_groups(cfg: RunConfig, policy: NeuralesePolicy, value_head: ValueHead | None) -> list[dict]:
    """Optimizer groups: language model (or its LoRA weights), feedback adapter + gate, value head."""
    rl = cfg.rl
    lm = [p for p in policy.model.parameters() if p.requires_grad]
    groups = [{"params": lm, "lr": rl.learning_rate, "name": "model"}]
    if policy.mode.feeds_back:
        feedback_lr = rl.feedback_learning_rate or rl.learning_rate
        groups.append({"params": list(policy.adapter.parameters()), "lr": feedback_lr, "name": "feedback"})
    if value_head is not None:
        groups.append(
            {
                "params": list(value_head.parameters()),
                "lr": rl.value_learning_rate or rl.learning_rate,
                "name": "value",
            }
        )
    return groups
