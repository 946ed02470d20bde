"""A gating cascade as a reward function: each stage answers where it can, the next scores the rest.

    rewards:
      - fn: cascade
        args:
          stages:
            - fn: reward_model          # cheap: a small model that abstains when unsure
              args: {path: runs/rm-small/gear-0, calibrated: true, abstain_below: 0.1, abstain_above: 0.9}
            - fn: reward_model          # costly: scores only what the first stage left
              args: {path: runs/rm/gear-0, calibrated: true}

A stage is any reward (a function, a plug-in, a reward model, a judge, another cascade) with its
args. Stage k is called only on the samples every stage before it returned None for; its values
are final where they are not None. The last stage must answer: if it returns None for every
sample left to it, the cascade stops the run with an error naming the stage (an earlier stage
may pass a whole batch on: a gate that rejects malformed answers has nothing to say once the
policy writes none). `metrics()` reports the share of samples each stage was given and answered,
and each stage's seconds.

`audit_share` also sends that share of the samples an earlier stage answered to the next stage,
to measure how often the two agree (both rewards on the same side of `agree_at`); the earlier
stage's reward is kept. Which samples are audited is a fixed hash of their text, so a resumed run
audits the same ones.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from neuralese.errors import ConfigError, RewardError
from neuralese.ranges import FiniteFloat, UnitFloat
from neuralese.rewards.combine import (
    check_rewards,
    invoke,
    register_reward_object,
    resolve_reward,
    reward_name,
    subset_columns,
)


@dataclass
class StageConfig:
    """One stage of a cascade."""

    fn: str = "exact_match"
    """A built-in reward, a reward object (`reward_model`, `judge`) or a plug-in `file.py:fn`."""
    args: dict[str, Any] = field(default_factory=dict)
    """Its arguments."""


@dataclass
class CascadeArgs:
    """`args` of a `cascade` reward."""

    stages: list[StageConfig] = field(default_factory=list)
    """Two or more stages, cheapest first."""
    audit_share: UnitFloat = 0.0
    """Share of each earlier stage's answers also scored by the next stage, to measure agreement."""
    agree_at: FiniteFloat = 0.5
    """Two stages agree on a sample when both rewards are >= this, or both below it."""


def audited(prompt: Any, completion: Any, share: float) -> bool:
    """A fixed pseudo-random choice of `share` of all samples, by a hash of their text."""
    return zlib.crc32(f"{prompt}\x00{completion}".encode()) < share * 2**32


class Cascade:
    """Stages called in order, each on the samples the ones before left unanswered."""

    Args = CascadeArgs
    __name__ = "cascade"

    def __init__(self, args: CascadeArgs, device: Any = "cpu", key: str = "args"):
        if len(args.stages) < 2:
            raise ConfigError(f"{key}.stages: a cascade needs two or more stages, got {len(args.stages)}")
        self.args, self.key = args, key
        self.stages = [
            resolve_reward(s.fn, s.args, key=f"{key}.stages[{k}].fn", device=device)
            for k, s in enumerate(args.stages)
        ]
        self.names = [f"stage{k}_{reward_name(fn)}" for k, fn in enumerate(self.stages)]
        self.last: dict[str, float] = {}

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float | None]:
        n = len(completions)
        out: list[float | None] = [None] * n
        pending = list(range(n))
        stats: dict[str, float] = {}
        agree = checked = 0
        for k, fn in enumerate(self.stages):
            last = k == len(self.stages) - 1
            audit = [] if k == 0 or not self.args.audit_share else self._audit_set(prompts, completions, out)
            given = pending + audit
            start = time.perf_counter()
            values = self._stage(k, fn, prompts, completions, columns, given) if given else []
            stats[f"{self.names[k]}/given"] = len(pending) / max(1, n)
            stats[f"{self.names[k]}/time_s"] = time.perf_counter() - start
            answered = [i for i, v in zip(pending, values) if not math.isnan(v)]
            if last and pending and not answered:
                raise RewardError(
                    f"{self.key}.stages[{k}]: the last stage {reward_name(fn)!r} returned None for all {len(pending)} "
                    "samples the stages before left to it; the last stage of a cascade must score them"
                )
            for i, v in zip(pending, values):
                if not math.isnan(v):
                    out[i] = v
            for i, v in zip(audit, values[len(pending) :]):
                if not math.isnan(v):
                    checked += 1
                    agree += (v >= self.args.agree_at) == (out[i] >= self.args.agree_at)
            stats[f"{self.names[k]}/answered"] = len(answered) / max(1, n)
            pending = [i for i in pending if out[i] is None]
        if self.args.audit_share:
            stats["audit/agreement"] = agree / checked if checked else math.nan
            stats["audit/samples"] = checked
        self.last = stats
        return out

    def _audit_set(self, prompts: list, completions: list, out: list) -> list[int]:
        """The answered samples this stage also scores (audited by the stage after the one that answered)."""
        return [
            i
            for i, v in enumerate(out)
            if v is not None and audited(prompts[i], completions[i], self.args.audit_share)
        ]

    def _stage(
        self, k: int, fn, prompts: list, completions: list, columns: dict, idx: list[int]
    ) -> list[float]:
        """Stage `k` on samples `idx`: its checked values, NaN for None."""
        sub_p, sub_c = [prompts[i] for i in idx], [completions[i] for i in idx]
        try:
            out = invoke(fn, sub_p, sub_c, subset_columns(columns, idx, len(completions)))
        except RewardError:
            raise
        except Exception as e:  # the outer call names the sample; this names the stage
            raise RewardError(
                f"{self.key}.stages[{k}] ({reward_name(fn)!r}) raised {type(e).__name__}: {e}"
            ) from None
        return check_rewards(fn, out, sub_p, sub_c)

    def metrics(self) -> dict[str, float]:
        """Per stage: share of the batch it was given and answered, seconds; the audit's agreement."""
        return {k: v for k, v in self.last.items() if not (isinstance(v, float) and math.isnan(v))}


register_reward_object("cascade", Cascade)
