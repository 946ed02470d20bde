"""The loss of one RL step, hyperparameters bound once and tensors passed per call (torchtune's
`PPOLoss.__init__` against `forward`).

`StepLoss.targets` computes what the whole step's rollout needs before any update: the advantages
(given, group-relative; or GAE over a value head for PPO), the reference log-probs when the KL is
on, and the step-wide normalizers. `StepLoss.__call__` is one micro-batch: the log-probs recomputed
with gradient through the latent chain truncated to the TBPTT window (`NeuralesePolicy.recompute`),
the clipped surrogate (+ KL) (+ value loss) as pure functions of neuralese.algorithms; for RAFT the
negative log-likelihood of the kept samples (+ KL), whose "advantages" are the filter's keep weights
(1 kept, 0 not). Normalizing by the whole step's counts (for RAFT, of its kept samples: `counted`)
makes the micro-batches' losses sum to the full batch's, whatever the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuralese import algorithms as algo
from neuralese.config import RLConfig
from neuralese.recompute import Window
from neuralese.rollout import Rollout

BASELINE = {"grpo": "mean", "dr_grpo": "mean", "rloo": "loo"}  # the group-relative family's baselines


@dataclass
class Targets:
    """What every micro-batch's loss reads of the whole step; [N, ...] rows in rollout order."""

    advantages: torch.Tensor  # [N] (group-relative) or [N, L] (PPO, whitened)
    ref_logprobs: torch.Tensor | None  # [N, L] the reference's token log-probs, when beta > 0
    returns: torch.Tensor | None  # [N, L] PPO's value targets
    old_values: torch.Tensor | None  # [N, L] the value head's at rollout (PPO)
    norm: dict  # the step-wide normalizers of neuralese.algorithms.aggregate


class StepLoss:
    """The clipped surrogate of one RL step, or RAFT's NLL of the kept samples (+ KL to the reference)
    (+ PPO's value loss)."""

    def __init__(
        self, rl: RLConfig, window: Window, micro_batch: int, value_head: torch.nn.Module | None = None
    ):
        self.rl, self.window, self.micro_batch, self.value_head = rl, window, micro_batch, value_head

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """[N] one value per sample of the whole step (`rewards` [N], groups contiguous): group-relative
        advantages, or for RAFT the filter's keep weights (1 kept, 0 not). PPO's come from `targets`."""
        rl = self.rl
        if rl.algorithm == "raft":
            return algo.keep_mask(rewards, rl.samples_per_prompt, rl.raft_min_reward, rl.raft_top_k).float()
        scale = "none" if rl.algorithm == "dr_grpo" else rl.scale_rewards
        return algo.group_advantages(rewards, rl.samples_per_prompt, BASELINE[rl.algorithm], scale)

    def counted(self, ro: Rollout, advantages: torch.Tensor | None) -> torch.Tensor:
        """[N, L] bool: the positions the step's normalizers count: every loss position, or for RAFT those
        of the kept samples (`advantages` [N] are then its keep weights)."""
        if self.rl.algorithm != "raft":
            return ro.loss_mask
        return ro.loss_mask & (advantages > 0).unsqueeze(1)

    def micro_batches(self, n: int) -> list[torch.Tensor]:
        """Row indices of each micro-batch of an N-row rollout."""
        return [torch.arange(s, min(s + self.micro_batch, n)) for s in range(0, n, self.micro_batch)]

    @torch.no_grad()
    def targets(
        self, policy, reference, ro: Rollout, advantages, rewards: torch.Tensor, norm: dict
    ) -> Targets:
        """The step's targets: reference log-probs when beta > 0, PPO's advantages, returns and values.
        `reference`: the frozen reference policy, or None for the policy itself with feedback (and LoRA) off."""
        ref = self.reference_logprobs(policy, reference, ro) if self.rl.beta > 0 else None
        if self.rl.algorithm != "ppo":
            return Targets(advantages, ref, None, None, norm)
        adv, returns, values = self.ppo_targets(policy, ro, rewards)
        return Targets(adv, ref, returns, values, norm)

    def reference_logprobs(self, policy, reference, ro: Rollout) -> torch.Tensor:
        """[N, L] token log-probs of the reference (feedback off; LoRA adapters off or a frozen copy)."""
        out = []
        for idx in self.micro_batches(ro.input_ids.shape[0]):
            if reference is not None:
                out.append(reference.recompute(ro.select(idx), 0).token_logprobs)
            else:
                with policy.feedback_disabled():
                    out.append(policy.recompute(ro.select(idx), 0).token_logprobs)
        return torch.cat(out)

    def ppo_targets(self, policy, ro: Rollout, rewards: torch.Tensor):
        """Per-position advantages (whitened), returns and old values for PPO."""
        mask = ro.loss_mask
        values = []
        for idx in self.micro_batches(ro.input_ids.shape[0]):
            rc = policy.recompute(ro.select(idx), 0, need_hidden=True)
            values.append(self.value_head(rc.hidden))
        values = torch.cat(values) * mask  # [N, L]
        last = mask.long().cumsum(-1).argmax(-1)  # [N] the last loss position
        per_pos = torch.zeros_like(values).scatter(1, last[:, None], rewards[:, None])  # [N, L]
        adv, returns = algo.gae(per_pos, values, mask, self.rl.gamma, self.rl.gae_lambda)
        return algo.masked_whiten(adv, mask), returns, values

    def probe(self, policy, mb: Rollout) -> torch.Tensor | None:
        """Zeros added to the fed-back hidden states; their gradient is the gradient on the latent path."""
        if not policy.mode.feeds_back or self.window == 0:
            return None
        return torch.zeros(
            *mb.input_ids.shape, policy.hidden_size, device=mb.input_ids.device, requires_grad=True
        )

    def __call__(self, policy, mb: Rollout, idx: torch.Tensor, targets: Targets):
        """Loss of the micro-batch `mb` (rows `idx` of the step): recompute with gradient through the
        truncated latent chain, then the clipped surrogate (+ KL) (+ value loss). Returns (loss, metrics, probe)."""
        rl, t = self.rl, targets
        probe = self.probe(policy, mb)
        rc = policy.recompute(mb, self.window, probe, need_hidden=t.old_values is not None)
        # With sampled thoughts the KL concerns tokens only: giving the reference our own thought
        # log-prob (with its gradient) cancels it from log pi - log ref exactly.
        mb_ref = None if t.ref_logprobs is None else t.ref_logprobs[idx] + rc.thought_logprobs
        mask = mb.loss_mask
        if rl.algorithm == "raft":  # the advantages are the filter's keep weights
            loss, m = algo.positive_loss(
                rc.logprobs,
                mb.logprobs,
                t.advantages[idx],
                mask,
                aggregation=rl.loss_aggregation,
                ref_logprobs=mb_ref,
                beta=rl.beta,
                kl_estimator=rl.kl_estimator,
                kl_ratio_correction=rl.kl_ratio_correction,
                **t.norm,
            )
        else:
            loss, m = algo.policy_loss(
                rc.logprobs,
                mb.logprobs,
                t.advantages[idx],
                mask,
                rl.epsilon_low,
                rl.epsilon_high,
                rl.loss_aggregation,
                mb_ref,
                rl.beta,
                rl.kl_estimator,
                rl.kl_ratio_correction,
                **t.norm,
            )
        if t.old_values is not None:
            vloss, vm = algo.value_loss(
                self.value_head(rc.hidden),
                t.old_values[idx],
                t.returns[idx],
                mask,
                rl.value_clip,
                rl.loss_aggregation,
                **t.norm,
            )
            loss = loss + rl.value_coef * vloss
            m.update(vm)
        m["entropy"] = algo.masked_mean(rc.entropy, mb.action_mask).detach()
        return loss, m, probe
