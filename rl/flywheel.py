"""What each step's update learns from: the rollout itself, or for RAFT the samples its filter kept, per
step or gathered over a round (the data flywheel of expert iteration).

RAFT (Dong et al. 2023; on-policy in Xiong et al. 2025), ReST-EM (Singh et al. 2023) and STaR
(Zelikman et al. 2022) learn from positive samples only: sample groups, keep those whose reward
clears a threshold (or the best k of each group: `neuralese.algorithms.keep_mask`), and maximise
their log-probability (`neuralese.algorithms.positive_loss`). With continuous thoughts the kept
answers carry their thoughts: the gradient of a kept answer's log-probability flows back through
the latent chain inside the TBPTT window, so every thought on the path of a right answer is pushed
toward making it likelier, even in groups whose samples are all right (which give GRPO nothing).

Two ways to turn the wheel (`rl.raft_samples_per_round`):

- per step (0): every step learns from its own kept samples at once (on-policy RAFT);
- rounds (N > 0): the kept samples of N sampled completions, drawn over N / (prompts x group) steps
  by the policy as it was when the round began, make a pool; the round's last step trains on it,
  `rl.num_iterations` epochs of as many optimizer steps as the round had steps, in a seeded order
  (ReST-EM's Grow and Improve, without its restart from the base model). The optimizer steps of a
  run are then `rl.steps` x `rl.num_iterations`, as in every other mode, so the schedule fits.

A step whose filter keeps nothing (over all processes) is a no-op: no optimizer step (the trainer's
update sees no loss token), logged as `update/skipped`. Under several processes each one trains on
its own kept samples; one with none while others have some trains a weightless row, so its
gradients exist for the average. The pool (and the round's counters) is part of every checkpoint,
one per process, so a run killed mid-round resumes bit for bit.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from neuralese.config import RLConfig
from neuralese.feedback import Draw
from neuralese.rollout import Rollout, cat_rollouts


@dataclass
class Batch:
    """One update's rows: the rollout, their advantages (RAFT: keep weights, 0 = a weightless row) and rewards."""

    rollout: Rollout
    advantages: torch.Tensor | None  # [B] (None for PPO, whose advantages come from its critic)
    rewards: torch.Tensor  # [B]


class Flywheel:
    """The updates of each step (module docstring), and RAFT's round pool with its counters."""

    def __init__(
        self, rl: RLConfig, seed: int, total: Callable[[torch.Tensor], torch.Tensor], pad_token_id: int
    ):
        """`total`: a tensor summed over processes (itself with one process); `pad_token_id` pads pooled rows."""
        self.rl, self.seed, self.total, self.pad_token_id = rl, seed, total, pad_token_id
        self.round = 0  # rounds completed
        # This round's kept samples so far (this process's), held on the CPU until the round trains on them.
        self.pool: Rollout | None = None
        self.pool_rewards = torch.zeros(0)  # [pool rows]
        # This round so far, over all processes: samples drawn, kept, and kept that the check calls right.
        self.counts = torch.zeros(3, dtype=torch.float64)

    @property
    def positive(self) -> bool:
        """RAFT: updates learn from the kept samples alone."""
        return self.rl.algorithm == "raft"

    @property
    def rounds(self) -> bool:
        """RAFT in round mode: a pool to keep in the checkpoints."""
        return self.positive and self.rl.raft_samples_per_round > 0

    @property
    def steps_per_round(self) -> int:
        return self.rl.raft_samples_per_round // (self.rl.prompts_per_step * self.rl.samples_per_prompt)

    def batches(
        self, ro: Rollout, advantages: torch.Tensor | None, rewards: torch.Tensor, correct: torch.Tensor
    ) -> tuple[list[Batch], dict[str, Any]]:
        """The updates of this step and what to log of its filter: ([Batch], metrics). `advantages` [N]
        are RAFT's keep weights (`StepLoss.advantages`); `correct` [N] the environment's check."""
        if not self.positive:
            return [Batch(ro, advantages, rewards)], {}
        keep = advantages > 0  # [N] this process's kept samples
        counts, metrics = self.filter_metrics(keep, correct.to(keep.device))
        if not self.rounds:
            return [kept_rows(ro, advantages, rewards)], metrics
        if keep.any():
            kept = ro.select(keep).to("cpu")
            self.pool = kept if self.pool is None else cat_rollouts([self.pool, kept], self.pad_token_id)
            self.pool_rewards = torch.cat([self.pool_rewards, rewards[keep].cpu()])
        self.counts += counts
        metrics["round/pool"] = int(self.counts[1])
        if self.counts[0] < self.rl.raft_samples_per_round:
            return [], metrics
        return self.close_round(ro), {**metrics, **self.round_metrics()}

    def filter_metrics(
        self, keep: torch.Tensor, correct: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The filter's counts over all processes ([sampled, kept, kept right]) and its metrics: the
        share of samples and of groups it kept, and how many of the kept the environment's check calls
        right (the filter's precision, when the filter is a reward model)."""
        groups = keep.view(-1, self.rl.samples_per_prompt)  # [N/G, G]
        local = torch.tensor(
            [
                keep.numel(),
                keep.sum().item(),
                (keep & correct).sum().item(),
                len(groups),
                groups.any(1).sum().item(),
            ],
            dtype=torch.float64,
            device=keep.device,
        )
        sampled, kept, right, n_groups, kept_groups = self.total(local).cpu().tolist()
        metrics = {
            "raft/kept": int(kept),
            "raft/kept_share": kept / sampled,
            "raft/kept_groups": kept_groups / n_groups,
            "raft/kept_accuracy": right / kept if kept else None,
        }
        return torch.tensor([sampled, kept, right], dtype=torch.float64), metrics

    def close_round(self, ro: Rollout) -> list[Batch]:
        """The round's updates: `num_iterations` epochs over the pool, each in as many optimizer steps as
        the round had steps, in an order seeded by the run's seed, the round and the epoch."""
        device = ro.input_ids.device
        if self.pool is None:  # this process kept nothing: weightless rows, one per update
            return [weightless(ro) for _ in range(self.rl.num_iterations * self.steps_per_round)]
        out = []
        for epoch in range(self.rl.num_iterations):
            order = torch.randperm(
                len(self.pool_rewards), generator=torch.Generator().manual_seed(self.order_seed(epoch))
            )
            for chunk in torch.tensor_split(order, self.steps_per_round):
                if not len(chunk):  # fewer kept rows here than updates in the round
                    out.append(weightless(ro))
                    continue
                rows = self.pool.select(chunk).to(device)
                out.append(Batch(rows, torch.ones(len(chunk), device=device), self.pool_rewards[chunk]))
        return out

    def order_seed(self, epoch: int) -> int:
        """The seed of one epoch's order over one round's pool."""
        return (self.seed * 1_000_003 + self.round * 1_009 + epoch) % (2**63)

    def round_metrics(self) -> dict[str, Any]:
        """The closing round's line, then a fresh round."""
        sampled, kept, right = self.counts.tolist()
        self.round += 1
        metrics = {
            "round/index": self.round,
            "round/sampled": int(sampled),
            "round/kept": int(kept),
            "round/kept_share": kept / sampled,
            "round/kept_accuracy": right / kept if kept else None,
            "round/updates": self.rl.num_iterations * self.steps_per_round,
        }
        self.pool, self.pool_rewards = None, torch.zeros(0)
        self.counts = torch.zeros(3, dtype=torch.float64)
        return metrics

    def merge(self, updates: list[dict[str, Any]]) -> dict[str, Any]:
        """The metrics of a step's updates as one line: each the mean over the updates that logged it;
        for RAFT `update/skipped`, the number taken without an optimizer step (nothing kept)."""
        if not self.positive:
            return updates[0]
        numbers = [(k, v) for u in updates for k, v in u.items() if isinstance(v, (int, float))]
        out: dict[str, Any] = {
            k: statistics.fmean(v for key, v in numbers if key == k)
            for k in dict.fromkeys(k for k, _ in numbers)
        }
        if updates:
            out["update/skipped"] = sum(u.get("update/skipped", 0) for u in updates)
        return out

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """This process's pool and the round's counters, as tensors, numbers and strings (`weights_only`)."""
        pool = None if self.pool is None else {**asdict(self.pool), "draw": asdict(self.pool.draw)}
        return {"round": self.round, "counts": self.counts, "pool": pool, "pool_rewards": self.pool_rewards}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the round a `state_dict` was taken in."""
        self.round, self.counts, self.pool_rewards = (
            int(state["round"]),
            state["counts"],
            state["pool_rewards"],
        )
        pool = state["pool"]
        self.pool = None if pool is None else Rollout(**{**pool, "draw": Draw(**pool["draw"])})


def kept_rows(ro: Rollout, keep: torch.Tensor, rewards: torch.Tensor) -> Batch:
    """This process's kept samples as one update (a weightless row when it kept none)."""
    idx = keep.nonzero().squeeze(-1)  # [K]
    if not len(idx):
        return weightless(ro)
    return Batch(ro.select(idx), keep[idx], rewards[idx])


def weightless(ro: Rollout) -> Batch:
    """One row at weight 0: its loss adds nothing, but its gradients exist for the average over processes
    (and a step where every process has only such rows takes no optimizer step at all)."""
    first = torch.arange(1, device=ro.input_ids.device)
    return Batch(ro.select(first), torch.zeros(1, device=ro.input_ids.device), torch.zeros(1))
