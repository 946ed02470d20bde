"""An RL curriculum from written to latent steps (the `curriculum` section of a recipe).

Coconut (Hao et al. 2024) trains continuous thoughts in stages: at stage s the first s
steps of the written chain are replaced by c * s thoughts and the model is supervised on
the rest. Here every stage is RL on the task reward and no latent is ever supervised:
stage s only sets how many thoughts the policy thinks before it writes (latent mode,
`c * s`), and the reward scores what it writes after them. A stage-0 model that has read
these formats (`pretrain.elided_steps`, thought tokens without content where the dropped
steps were) writes from step s+1 on at switch-on; the thoughts can then learn to carry
what the dropped steps said.

Without a cost on writing, RL finds it easier to write the dropped steps again after the
thoughts than to carry them in the thoughts (measured on pointer chasing: the answers grew
back to full length). `tokens_per_step` makes stage s answer within the budget minus the
dropped steps' tokens, so a policy that writes them again runs out of tokens before its answer.

A stage ends after `steps_per_stage` RL steps, or (`advance: plateau`) when the moving
mean of the training reward over the last `patience` steps has not risen by `min_delta`
above its best. The stage is part of the trainer's state (checkpoints, `--resume`) and of
every metrics line (`curriculum/stage`); each change is announced and logged.

The curriculum is the one writer of the policy's number of thoughts: it sets the
`num_thoughts` of the thought config it is given at its start, at every stage change and when
its state is loaded (a resumed run, or a run checkpoint loaded for evaluation).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from neuralese.config import CurriculumConfig, NeuraleseConfig


class Curriculum:
    """Which stage RL is at, and when the next one starts."""

    def __init__(self, cfg: CurriculumConfig, thoughts: NeuraleseConfig | None = None):
        """`thoughts`: the policy's thought config, whose `num_thoughts` this curriculum sets (when enabled)."""
        self.cfg = cfg
        self.thoughts = thoughts
        self.stage = cfg.start
        self.stage_steps = 0  # RL steps taken in this stage
        self.best = float("-inf")  # best moving mean of the reward in this stage
        self.since_best = 0
        self.recent: deque[float] = deque(maxlen=cfg.patience)
        self._write()

    def _write(self) -> None:
        if self.enabled and self.thoughts is not None:
            self.thoughts.num_thoughts = self.num_thoughts

    @property
    def enabled(self) -> bool:
        return self.cfg.stages > 0

    @property
    def num_thoughts(self) -> int:
        """Thoughts at this stage: c * s."""
        return self.cfg.thoughts_per_step * self.stage

    def budget(self, max_new_tokens: int) -> int:
        """The answer tokens this stage allows out of `max_new_tokens` (see `tokens_per_step`)."""
        if not self.enabled:
            return max_new_tokens
        return max(1, max_new_tokens - self.cfg.tokens_per_step * self.stage)

    def observe(self, reward_mean: float) -> bool:
        """Count one RL step with this mean reward; True when it ends the stage (the next has begun)."""
        if not self.enabled or self.stage >= self.cfg.stages:
            return False
        self.stage_steps += 1
        self.recent.append(reward_mean)
        if len(self.recent) == self.recent.maxlen:
            mean = sum(self.recent) / len(self.recent)
            if mean > self.best + self.cfg.min_delta:
                self.best, self.since_best = mean, 0
            else:
                self.since_best += 1
        plateau = self.cfg.advance == "plateau" and self.since_best >= self.cfg.patience
        if plateau or self.stage_steps >= self.cfg.steps_per_stage:
            self.stage += 1
            self.stage_steps, self.best, self.since_best = 0, float("-inf"), 0
            self.recent.clear()
            self._write()
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON data (no infinities: `best` is None before the first full window)."""
        best = None if self.best == float("-inf") else self.best
        return {
            "stage": self.stage,
            "stage_steps": self.stage_steps,
            "best": best,
            "since_best": self.since_best,
            "recent": list(self.recent),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage, self.stage_steps = int(state["stage"]), int(state["stage_steps"])
        self.best = float("-inf") if state["best"] is None else float(state["best"])
        self.since_best = int(state["since_best"])
        self.recent = deque(state["recent"], maxlen=self.cfg.patience)
        self._write()
