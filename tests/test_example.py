"""examples/latent_grpo_minimal.py teaches one latent GRPO step in one file; one of its steps is the
trainer's update: from the same weights, seed and settings, `train_step` and `Trainer.step` leave the
same weights (the language model's and the feedback adapter's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from neuralese.config import (
    EnvConfig,
    EvalConfig,
    LogConfig,
    ModelConfig,
    NeuraleseConfig,
    RewardConfig,
    RLConfig,
    RunConfig,
)
from neuralese.envs import make_env
from neuralese.trainer import Trainer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "latent_grpo_minimal.py"


def load_example():
    spec = importlib.util.spec_from_file_location("latent_grpo_minimal", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def trainer_config(args, out: Path) -> RunConfig:
    """The trainer's settings for the example's `args` (everything else at the trainer's defaults)."""
    return RunConfig(
        seed=args.seed,
        output_dir=str(out),
        model=ModelConfig(path=args.model),
        env=EnvConfig(name="addition", args={"digits": 3}, train_size=args.train_size, test_size=8),
        rewards=[RewardConfig(fn=f"{EXAMPLE}:digit_share")],
        neuralese=NeuraleseConfig(
            mode="latent", num_thoughts=args.num_thoughts, tbptt_window=args.tbptt_window
        ),
        rl=RLConfig(
            steps=1,
            prompts_per_step=args.prompts_per_step,
            samples_per_prompt=args.samples_per_prompt,
            micro_batch_per_device=args.prompts_per_step * args.samples_per_prompt,
            learning_rate=args.learning_rate,
            feedback_learning_rate=args.feedback_learning_rate,
            epsilon_low=args.epsilon,
            epsilon_high=args.epsilon,
            max_grad_norm=args.max_grad_norm,
            max_new_tokens=args.max_new_tokens,
        ),
        eval=EvalConfig(n=8),
        log=LogConfig(trackers=[]),
    )


@pytest.mark.parametrize("window", [0, 2, 3])
def test_one_step_of_the_example_is_the_trainers_update(tiny_dir, tmp_path, window):
    ex = load_example()
    args = ex.Args(
        model=str(tiny_dir),
        seed=3,
        prompts_per_step=4,
        samples_per_prompt=4,
        num_thoughts=3,
        tbptt_window=window,
        max_new_tokens=5,
        learning_rate=1e-3,
        feedback_learning_rate=1e-2,
        train_size=64,
    )
    trainer = Trainer(trainer_config(args, tmp_path / "run"))
    start = {k: v.detach().clone() for k, v in trainer.policy.model.state_dict().items()}
    trainer.step()

    env = make_env("addition", {"digits": 3})
    model, tok, fb, optimizer = ex.setup(args, env)
    rows = env.dataset("train", args.train_size, args.seed)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(args.seed))[
        : args.prompts_per_step
    ]
    metrics = ex.train_step(
        model,
        tok,
        fb,
        optimizer,
        env,
        rows.select(order.tolist()).to_dict(),
        args,
        torch.Generator().manual_seed(args.seed * 1000),
    )

    assert metrics["grad_norm"] > 0 and 0 < metrics["reward"] < 1
    theirs = trainer.policy.model.state_dict()
    moved = 0
    for name, value in model.state_dict().items():
        torch.testing.assert_close(
            value, theirs[name], atol=1e-6, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
        )
        moved += not torch.equal(theirs[name], start[name])
    assert moved > 0, "the step moved no weight of the language model"
    for name, value in fb.state_dict().items():
        torch.testing.assert_close(value, trainer.policy.adapter.state_dict()[name], atol=1e-6, rtol=1e-5)
    assert fb.gate_logit.abs().max() > 0  # the gate opened: its gradient is not zero at switch-on
