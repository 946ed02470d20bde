"""Every thought mode through the whole pipeline on tiny real models: RL steps in the trainer, export,
load, and the same rollouts from the loaded policy; the modes as ablation arms, with their controls."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from runs import run_config

from neuralese.ablate.arms import PAUSE_SETS, load_spec, with_controls
from neuralese.build import check_run
from neuralese.config import load_config
from neuralese.envs import load_split, make_env
from neuralese.errors import ConfigError
from neuralese.evaluate import evaluate
from neuralese.export import export
from neuralese.load import load_policy
from neuralese.policy import NeuralesePolicy
from neuralese.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["123+456=", "9+1=", "12+3=", "999+999="]
MODES = {
    "channel": ({"mode": "channel", "channel_width": 8}, "grpo"),
    "refine-thoughts": ({"mode": "refine", "refine_passes": 2, "noise_std": 0.2}, "grpo"),
    "refine-answer": ({"mode": "refine", "refine_over": "answer", "refine_passes": 3}, "ppo"),
}


@pytest.mark.parametrize("name", list(MODES))
def test_train_export_and_load_round_trip(tiny_dir, tmp_path, name):
    settings, algorithm = MODES[name]
    # Three steps: the first opens the gate (a closed one passes no gradient on), the next ones move the rest.
    cfg = run_config(
        tiny_dir,
        tmp_path / "run",
        settings["mode"],
        algorithm,
        steps=3,
        learning_rate=3e-3,
        feedback_learning_rate=0.1,
        rewards=("digit_share",),
        log={"save_every": 3},
    )
    cfg.neuralese = dataclasses.replace(cfg.neuralese, **settings)
    trainer = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.policy.adapter.named_parameters()}
    trainer.train()
    moved = [n for n, p in trainer.policy.adapter.named_parameters() if not torch.equal(before[n], p)]
    assert "gate_logit" in moved and "proj.weight" in moved, moved
    if name == "channel":  # the state's own weights learn too
        assert {"channel.write.weight", "channel.read.weight", "channel.retention.logit"} <= set(moved)

    out = export(tmp_path / "run", tmp_path / "export")
    loaded = NeuralesePolicy.from_pretrained(out)
    assert loaded.config == trainer.policy.config
    ids, mask = loaded.encode(PROMPTS)
    ours, theirs = (
        p.eval().rollout(ids, mask, 6, 1.0, torch.Generator().manual_seed(3))
        for p in (trainer.policy, loaded)
    )
    for field in ("input_ids", "feedback", "logprobs"):
        assert torch.equal(getattr(ours, field), getattr(theirs, field)), field
    assert ours.extra.keys() == theirs.extra.keys() and all(
        torch.equal(ours.extra[k], theirs.extra[k]) for k in ours.extra
    )
    assert load_policy(tmp_path / "run").adapter.state_dict().keys() == loaded.adapter.state_dict().keys()


# ----------------------------------------------------------------------------- ablation arms

SPEC = ROOT / "recipes" / "arms" / "modes.yaml"
RECIPE = """# neuralese train THIS.yaml  (a test recipe: latent mode with an RL curriculum and its stage-0 formats, like recipes/refine.yaml)
seed: 0
output_dir: {out}
model: {{path: {model}}}
env: {{name: addition, args: {{digits: 3}}, train_size: 64, test_size: 8}}
pretrain: {{elided_steps: true}}
curriculum: {{stages: 2, thoughts_per_step: 1, start: 1}}
neuralese: {{mode: latent, num_thoughts: 2, tbptt_window: 1}}
rl: {{steps: 1, prompts_per_step: 2, samples_per_prompt: 2, micro_batch_per_device: 4, max_new_tokens: 4}}
eval: {{n: 4, batch_size: 4, max_new_tokens: 4}}
"""


def test_every_arm_and_its_controls_load_build_and_run(tiny_dir, tmp_path):
    """Each arm of the spec (and its pause twin) is a valid recipe override; its policy rolls out, is
    recomputed exactly, and answers from shuffled thoughts, the two controls `neuralese ablate` runs."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "out", model=tiny_dir))
    _, arms = load_spec(str(SPEC))
    arms = with_controls(arms)
    assert {"channel", "refine", "refine-answer", "channel+pause", "refine+pause"} <= set(arms)
    env = make_env("addition", {"digits": 3})
    prompts = list(load_split(env, "test", 4, 0, "addition")["prompt"])
    for arm in arms.values():
        cfg = load_config(recipe, arm.sets)
        from neuralese.build import build_policy

        policy = build_policy(cfg, "cpu")
        if cfg.curriculum.stages:
            policy.config.num_thoughts = cfg.curriculum.thoughts_per_step * cfg.curriculum.start
        ids, mask = policy.encode(prompts)
        ro = policy.rollout(ids, mask, 4, 1.0, torch.Generator().manual_seed(0))
        torch.testing.assert_close(
            policy.recompute(ro, cfg.neuralese.tbptt_window).logprobs, ro.logprobs, atol=1e-5, rtol=0
        )
        if arm.control_of is not None:
            assert all(s in arm.sets for s in PAUSE_SETS) and policy.config.space == "pause"
        if "shuffled" in arm.controls:
            result = evaluate(
                policy.eval(),
                env,
                "test",
                4,
                0,
                4,
                4,
                env_name="addition",
                progress=False,
                thoughts="shuffled",
            )
            assert result["thoughts"] == "shuffled" and 0 <= result["accuracy"] <= 1


@pytest.mark.parametrize(
    "sets, fragment",
    [
        (
            ["neuralese.mode=channel", "pretrain.elided_steps=false"],
            "curriculum.stages",
        ),  # thoughts before the answer
        (
            ["neuralese.mode=refine", "neuralese.refine_over=answer", "pretrain.elided_steps=false"],
            "curriculum.stages",
        ),
        (
            ["neuralese.mode=refine", "neuralese.tbptt_window=4"],
            "neuralese.tbptt_window' must be <= neuralese.refine_passes",
        ),
        (
            [
                "neuralese.mode=channel",
                "curriculum.stages=0",
                "pretrain.elided_steps=false",
                "rl.rollout_engine=vllm",
            ],
            "'hf' in channel mode",
        ),
        (
            [
                "neuralese.mode=refine",
                "curriculum.stages=0",
                "pretrain.elided_steps=false",
                "neuralese.num_thoughts=0",
            ],
            "neuralese.num_thoughts",
        ),
        (
            ["neuralese.mode=channel", "curriculum.stages=0", "neuralese.channel_retention=1"],
            "channel_retention",
        ),
    ],
)
def test_mode_settings_that_do_not_fit_are_refused(tiny_dir, tmp_path, sets, fragment):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "out", model=tiny_dir))
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        check_run(load_config(recipe, sets), str(recipe))
