"""The RL curriculum from written to latent steps, the stage-0 formats it reads, and the thought controls."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from runs import run_config, step_rows

from neuralese.config import CurriculumConfig, NeuraleseConfig
from neuralese.curriculum import Curriculum
from neuralese.envs import make_env
from neuralese.evaluate import shuffled_answers
from neuralese.policy import NeuralesePolicy
from neuralese.pretrain import sft_dataset
from neuralese.tiny import THOUGHT, build_tokenizer


def test_stages_advance_on_steps_and_stop_at_the_last():
    cur = Curriculum(CurriculumConfig(stages=3, thoughts_per_step=2, start=1, steps_per_stage=3))
    seen = []
    for _ in range(12):
        seen.append(cur.num_thoughts)
        cur.observe(0.5)
    assert seen == [2, 2, 2, 4, 4, 4, 6, 6, 6, 6, 6, 6]


def test_stages_advance_on_a_reward_plateau():
    cfg = CurriculumConfig(
        stages=2, start=0, advance="plateau", patience=3, min_delta=0.05, steps_per_stage=100
    )
    cur = Curriculum(cfg)
    rising = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert not any(cur.observe(r) for r in rising)  # still improving: stage 0 holds
    taken = next(i for i in range(1, 11) if cur.observe(0.6))
    # The moving mean (window 3) still rises once as the flat rewards fill it, then `patience` steps without.
    assert cur.stage == 1 and taken == 1 + 3
    # The state survives a JSON round trip (checkpoints) and continues identically.
    twin = Curriculum(cfg)
    twin.load_state_dict(json.loads(json.dumps(cur.state_dict())))
    assert [twin.observe(0.6) for _ in range(8)] == [cur.observe(0.6) for _ in range(8)]


def test_elided_formats_drop_steps_for_thought_tokens():
    env = make_env("chase", {"nodes": 6, "hops": 3, "cot": True, "chain": "edges"})
    train = env.dataset("train", 200, seed=0)
    tok = build_tokenizer(["0123456789,|:"])
    data = sft_dataset(train, tok, 0, seed=0, elide=(2, 1))
    counts = set()
    for row, src in zip(data, train):
        s = row["prompt"].count(THOUGHT)
        counts.add(s)
        assert row["prompt"] == src["prompt"] + THOUGHT * s
        assert row["completion"] == "".join(src["written_steps"][s:]) + src["completion"].split(",")[-1]
    assert counts == {0, 1, 2}


def test_elided_formats_need_written_steps():
    env = make_env("addition", {"digits": 2})
    from neuralese.errors import ConfigError

    with pytest.raises(ConfigError, match="cot: true"):
        sft_dataset(env.dataset("train", 8, seed=0), build_tokenizer(["0123456789+="]), 0, 0, elide=(1, 1))


def test_trainer_follows_the_curriculum_and_resumes_into_its_stage(tiny_dir, tmp_path):
    from neuralese.trainer import Trainer

    def config(steps):
        cfg = run_config(tiny_dir, tmp_path / "run", mode="latent", steps=steps, rewards=("digit_share",))
        cfg.curriculum = CurriculumConfig(stages=3, thoughts_per_step=1, start=1, steps_per_stage=2)
        cfg.log.save_every, cfg.log.keep_checkpoints = 1, 10
        return cfg

    trainer = Trainer(config(6))
    trainer.train(stop_after=3)
    rows = step_rows(tmp_path / "run")
    assert [r["curriculum/stage"] for r in rows] == [1, 1, 2]
    assert [r["thoughts/mean"] for r in rows] == [1, 1, 2]
    assert rows[1].get("curriculum/advanced") == 1
    resumed = Trainer(config(6), resume=True)
    assert resumed.curriculum.stage == 2 and resumed.policy.config.num_thoughts == 2
    resumed.train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    stages = [r["curriculum/stage"] for r in rows if "curriculum/stage" in r]
    assert stages == [1, 1, 2, 2, 3, 3]
    # The run's config keeps the recipe's num_thoughts (the policy holds a copy the curriculum changes);
    # the checkpoint's policy thinks as many thoughts as its stage.
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["neuralese"]["num_thoughts"] == 3 and saved["curriculum"]["stages"] == 3
    from neuralese.load import load_policy

    assert load_policy(tmp_path / "run" / "checkpoints" / "step-6").config.num_thoughts == 3
    assert load_policy(tmp_path / "run" / "checkpoints" / "step-3").config.num_thoughts == 2


def _policy(tiny_dir, **kw):
    cfg = NeuraleseConfig(mode="latent", num_thoughts=3, **kw)
    policy = NeuralesePolicy.from_pretrained(tiny_dir, config=cfg)
    with torch.no_grad():
        policy.adapter.gate_logit.fill_(2.0)  # open: the thoughts change the answers
    return policy


def test_shuffled_control_feeds_another_prompts_thoughts(tiny_dir):
    policy = _policy(tiny_dir)
    prompts = ["123+456=", "9+1=", "12+3=", "999+999="]
    ids, mask = policy.encode(prompts)
    own = policy.rollout(ids, mask, 5, 0.0)
    texts, _ = shuffled_answers(policy, prompts, 5)
    shuffled = policy.rollout(ids, mask, 5, 0.0, thoughts=own.feedback[:, own.prompt_length :].roll(-1, 0))
    assert texts == policy.decode(shuffled)
    plen = own.prompt_length
    # Each prompt read the thoughts the next prompt had, and answered differently for it.
    fed = shuffled.feedback[:, plen : plen + 3]
    torch.testing.assert_close(fed, own.feedback[:, plen : plen + 3].roll(-1, 0))
    assert texts != policy.decode(own)


def test_pause_thoughts_are_one_learned_vector_for_every_input(tiny_dir):
    policy = _policy(tiny_dir, space="pause")
    table = policy.embedding_table
    torch.testing.assert_close(policy.adapter.pause_vector.detach(), table[policy.thought_token_id].float())
    ids, mask = policy.encode(["123+456=", "9+1="])
    ro = policy.rollout(ids, mask, 4, 1.0, torch.Generator().manual_seed(0))
    fed = ro.feedback[ro.feedback_mask]
    assert torch.equal(fed, policy.adapter.pause_vector.detach().expand_as(fed))


def test_a_curriculum_needs_thoughts_before_the_answer():
    from neuralese.build import check_run
    from neuralese.errors import ConfigError

    cfg = run_config("unused", "unused", mode="hybrid")
    cfg.curriculum = CurriculumConfig(stages=2)
    with pytest.raises(ConfigError, match="'curriculum.stages' must be 0 in hybrid mode"):
        check_run(cfg)


def test_stage0_trains_the_plain_chain_before_the_formats(tmp_path):
    from neuralese.config import EnvConfig, ModelConfig, PretrainConfig, RunConfig, TinyModelConfig
    from neuralese.pretrain import pretrain

    cfg = RunConfig(
        output_dir=str(tmp_path / "run"),
        model=ModelConfig(
            path=str(tmp_path / "as-is"),
            tiny=TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32),
        ),
        env=EnvConfig(
            name="chase",
            args={"nodes": 5, "hops": 3, "cot": True, "chain": "edges"},
            train_size=64,
            test_size=8,
        ),
        neuralese=NeuraleseConfig(mode="latent"),
        curriculum=CurriculumConfig(stages=2),
        pretrain=PretrainConfig(max_steps=10, batch_size=8, elided_steps=True, plain_fraction=0.3),
    )
    log = json.loads((pretrain(cfg) / "pretrain_log.json").read_text())
    assert [(p["phase"], p["steps"]) for p in log["phases"]] == [
        ("plain target", 3),
        ("thought-token formats", 7),
    ]
    cfg.pretrain.plain_fraction, cfg.model.path = 0.0, str(tmp_path / "mixed")
    log = json.loads((pretrain(cfg) / "pretrain_log.json").read_text())
    assert [p["steps"] for p in log["phases"]] == [10]
