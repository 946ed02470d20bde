"""What one RL step logs about its samples: reward, accuracy, lengths and thoughts (metrics.jsonl, completions.jsonl)."""

from __future__ import annotations

from typing import Any

import torch

from neuralese import algorithms as algo
from neuralese.policy import NeuralesePolicy
from neuralese.rollout import Rollout


def rollout_metrics(
    policy: NeuralesePolicy,
    ro: Rollout,
    rewards: torch.Tensor,
    per_func: dict[str, torch.Tensor],
    correct: torch.Tensor,
    group_size: int,
) -> dict[str, Any]:
    """Rewards [N] and correctness [N] of the whole step (gathered over processes); lengths and
    thoughts of this process's rollout `ro`."""
    m = {
        "reward/mean": rewards.mean().item(),
        "reward/std": rewards.std().item() if rewards.numel() > 1 else 0.0,
        "reward/zero_spread_groups": algo.zero_spread_fraction(rewards.cpu(), group_size).item(),
        "accuracy": correct.float().mean().item(),
        "generated_positions/mean": ro.generated_positions.float().mean().item(),
        "thoughts/mean": ro.num_thoughts.float().mean().item(),
    }
    for name, values in per_func.items():
        applied = values[~values.isnan()]  # a function's None is NaN: not counted
        # null, not NaN, where it applied to no sample: NaN is not JSON, and NaN != NaN in any comparison
        m[f"reward/{name}/mean"] = applied.mean().item() if len(applied) else None
        m[f"reward/{name}/std"] = applied.std().item() if len(applied) > 1 else 0.0
    if policy.mode.feeds_back:
        if policy.adapter.has_gate:
            m["feedback/gate_mean_abs"] = policy.adapter.gate().abs().mean().item()
        fb = ro.feedback[ro.feedback_mask]
        m["feedback/vector_norm"] = fb.norm(dim=-1).mean().item() if len(fb) else 0.0
    return m


def completion_rows(
    rows: dict[str, list],
    texts: list[str],
    ro: Rollout,
    rewards: torch.Tensor,
    group_size: int,
    limit: int = 8,
) -> list[dict[str, Any]]:
    """The first `limit` samples of a step, for completions.jsonl."""
    out = []
    for i in range(min(limit, len(texts))):
        out.append(
            {
                "prompt": rows["prompt"][i // group_size],
                "completion": texts[i],
                "answer": rows["answer"][i // group_size],
                "reward": rewards[i].item(),
                "thoughts": int(ro.num_thoughts[i]),
                "positions": int(ro.generated_positions[i]),
            }
        )
    return out
