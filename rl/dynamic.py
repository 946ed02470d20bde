"""Dynamic sampling: each step learns from groups whose rewards differ (DAPO's filter, `rl.dynamic_sampling`).

A group whose samples all score the same has advantage 0 everywhere: under GRPO, Dr. GRPO and RLOO it
adds positions to the loss's normalizer and nothing to its gradient. Late in a run most groups are
like that (all right), and the few that remain make a step's gradient noisy. DAPO (Yu et al. 2025,
arXiv 2503.14476) keeps drawing prompts until a step has `rl.prompts_per_step` groups with reward
spread and trains on those alone; verl calls it `filter_groups`.

Here a step draws `rl.prompts_per_step` prompts at a time (each draw a rollout and its rewards, as a step
without the filter makes), keeps the groups with spread, and draws again until every process holds its
share, or `rl.dynamic_sampling_max_draws` draws are done. A step that ends short is filled with groups
without spread from its first draws, in the order drawn (their advantages are 0, so they change only
the normalizer), so every process trains on the same number of groups and a step always takes the
same shape. The prompts the step drew are consumed from the data order, so an epoch passes sooner.

What is logged about the filter (`sampling/...`): the draws of the step, the share of drawn groups
with spread, and the reward and accuracy over every drawn sample: the policy's own success rate, which
the step's batch (picked for spread) no longer estimates. A curriculum with `advance: plateau` reads
the drawn reward for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from neuralese.rollout import Rollout, cat_rollouts


@dataclass
class Drawn:
    """One draw of a step: its prompts' rows, rollout, completions, rewards and the check's verdicts."""

    rows: dict[str, list]  # a column per key, one entry per prompt
    rollout: Rollout  # G rows per prompt, groups contiguous
    texts: list[str]  # [N]
    rewards: torch.Tensor  # [N] weighted total
    per_func: dict[str, torch.Tensor]  # name -> [N] (NaN where the function does not apply)
    correct: torch.Tensor  # [N] bool
    # The draw's times (`time/rollout_s`, `time/reward_s`, the reward calls'), the functions' own metrics
    stats: dict[str, Any] = field(default_factory=dict)

    def groups(self, index: list[int], group_size: int) -> Drawn:
        """The groups `index` (prompt order) of this draw."""
        rows_idx = torch.tensor(
            [g * group_size + j for g in index for j in range(group_size)], dtype=torch.long
        )
        return Drawn(
            rows={k: [v[g] for g in index] for k, v in self.rows.items()},
            rollout=self.rollout.select(rows_idx.to(self.rollout.input_ids.device)),
            texts=[self.texts[i] for i in rows_idx.tolist()],
            rewards=self.rewards[rows_idx.to(self.rewards.device)],
            per_func={k: v[rows_idx.to(v.device)] for k, v in self.per_func.items()},
            correct=self.correct[rows_idx.to(self.correct.device)],
            stats=self.stats,
        )


def group_spread(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N/G] bool: the groups whose rewards are not all equal (`isclose`, as TRL's zero-std test)."""
    grouped = rewards.view(-1, group_size)
    return ~torch.isclose(grouped, grouped[:, :1]).all(dim=1)


def join(draws: list[Drawn], pad_token_id: int) -> Drawn:
    """Several draws as one batch (rows padded as `cat_rollouts` pads them)."""
    if len(draws) == 1:
        return draws[0]
    first = draws[0]
    return Drawn(
        rows={k: [x for d in draws for x in d.rows[k]] for k in first.rows},
        rollout=cat_rollouts([d.rollout for d in draws], pad_token_id),
        texts=[t for d in draws for t in d.texts],
        rewards=torch.cat([d.rewards for d in draws]),
        per_func={k: torch.cat([d.per_func[k] for d in draws]) for k in first.per_func},
        correct=torch.cat([d.correct for d in draws]),
        stats=joined_stats([d.stats for d in draws]),
    )


def joined_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Several draws' stats as one step's: times (`time/...`) summed, a function's own metrics as its
    last call reports them."""
    out: dict[str, Any] = {}
    for one in stats:
        for k, v in one.items():
            out[k] = out.get(k, 0.0) + v if k.startswith("time/") else v
    return out


class DynamicSampler:
    """Draws until every process holds its share of groups with spread (module docstring)."""

    def __init__(
        self,
        group_size: int,
        max_draws: int,
        total: Callable[[torch.Tensor], torch.Tensor],
        pad_token_id: int,
    ):
        """`total`: a tensor summed over processes (itself with one process)."""
        self.group_size, self.max_draws, self.total, self.pad_token_id = (
            group_size,
            max_draws,
            total,
            pad_token_id,
        )

    def collect(self, draw: Callable[[], Drawn]) -> tuple[Drawn, dict[str, Any]]:
        """This process's batch for the step and the filter's metrics. `draw()` makes one draw of this
        process's share of `rl.prompts_per_step` prompts; every process calls `collect` together."""
        G = self.group_size
        draws: list[Drawn] = []
        kept: list[tuple[int, int]] = []  # (draw, group) with spread, in the order drawn
        share = 0
        while True:
            d = draw()
            draws.append(d)
            share = share or len(d.rewards) // G  # this process's groups per draw
            spread = group_spread(d.rewards, G).tolist()
            kept += [(len(draws) - 1, g) for g, s in enumerate(spread) if s]
            short = torch.tensor([float(len(kept) < share)], dtype=torch.float64, device=d.rewards.device)
            if self.total(short).item() == 0 or len(draws) == self.max_draws:
                break
        picked = kept[:share]
        if len(picked) < share:  # the last draw came and some groups still lack spread: fill in order drawn
            chosen = set(picked)
            flat = [(i, g) for i in range(len(draws)) for g in range(share)]
            picked += [x for x in flat if x not in chosen][: share - len(picked)]
        by_draw = {i: sorted(g for j, g in picked if j == i) for i in range(len(draws))}
        batch = join([draws[i].groups(gs, G) for i, gs in by_draw.items() if gs], self.pad_token_id)
        return batch, self.metrics(draws, len(kept))

    def metrics(self, draws: list[Drawn], kept: int) -> dict[str, Any]:
        """The filter's line over all processes: draws, groups drawn and with spread, drawn reward and accuracy."""
        rewards = torch.cat([d.rewards.double().cpu() for d in draws])
        correct = torch.cat([d.correct.double().cpu() for d in draws])
        local = torch.tensor(
            [len(rewards) // self.group_size, kept, rewards.sum().item(), correct.sum().item(), len(rewards)],
            dtype=torch.float64,
            device=draws[0].rewards.device,  # a device tensor where the collective needs one (NCCL)
        )
        groups, spread, reward_sum, right, samples = self.total(local).tolist()
        return {
            "sampling/draws": len(draws),
            "sampling/groups_drawn": int(groups),
            "sampling/spread_share": spread / groups,
            "sampling/reward_mean": reward_sum / samples,
            "sampling/accuracy": right / samples,
        }
