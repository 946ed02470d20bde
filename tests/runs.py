"""The small RL runs the tests share: one config builder, overridable field by field."""

from __future__ import annotations

import json
from pathlib import Path

from neuralese.config import (
    EnvConfig,
    EvalConfig,
    LogConfig,
    LoraSettings,
    ModelConfig,
    NeuraleseConfig,
    RewardConfig,
    RLConfig,
    RunConfig,
)

PLUGINS = Path(__file__).parent / "plugins" / "rewards.py"


def run_config(
    model_dir,
    out,
    mode: str = "latent",
    algorithm: str = "grpo",
    steps: int = 2,
    *,
    lora: int = 0,
    rewards: tuple[str, ...] = ("digit_share", "thought_count"),
    log: dict | None = None,
    **rl,
) -> RunConfig:
    """A few RL steps on 3-digit addition from `model_dir`, rewards from tests/plugins/rewards.py.

    `digit_share` varies between samples of an untrained model, so advantages are not all zero;
    `thought_count` (weight 0.5) checks the extra columns the trainer passes to rewards.
    """
    weights = {"thought_count": 0.5}
    return RunConfig(
        seed=0,
        output_dir=str(out),
        model=ModelConfig(path=str(model_dir), lora=LoraSettings(r=lora, alpha=8)),
        env=EnvConfig(name="addition", args={"digits": 3}, train_size=64, test_size=16),
        rewards=[RewardConfig(fn=f"{PLUGINS}:{name}", weight=weights.get(name, 1.0)) for name in rewards],
        neuralese=NeuraleseConfig(mode=mode, num_thoughts=3, tbptt_window=2),
        rl=RLConfig(
            **{
                "algorithm": algorithm,
                "steps": steps,
                "prompts_per_step": 4,
                "samples_per_prompt": 4,
                "micro_batch_per_device": 8,
                "learning_rate": 1e-3,
                "max_new_tokens": 6,
                **rl,
            }
        ),
        eval=EvalConfig(n=8, max_new_tokens=6),
        log=LogConfig(**{"save_every": 2, "completions_every": 1, "trackers": [], **(log or {})}),
    )


def metric_rows(run) -> list[dict]:
    """Every row of a run's metrics.jsonl: step 0 (the evaluation before RL), then one per step."""
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def step_rows(run) -> list[dict]:
    """The rows of a run's RL steps (step 0, the evaluation before the first step, left out)."""
    return [row for row in metric_rows(run) if row["step"] > 0]
