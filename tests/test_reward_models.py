"""Reward models, judges and cascades as rewards, and reward models trained here (neuralese.rewardmodels).

Real parts only: tiny sequence classifiers and causal LMs built from a config with a tokenizer
made from the task's text, saved and loaded back through the reward's own code; real
environments; TRL's RewardTrainer.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from runs import step_rows
from transformers import AutoModelForSequenceClassification

from neuralese.cli import main
from neuralese.config import TinyModelConfig
from neuralese.envs import env_texts, make_env
from neuralese.errors import CheckpointError, ConfigError, RewardError
from neuralese.ranges import numeric_fields, range_of
from neuralese.rewardmodels.cascade import CascadeArgs
from neuralese.rewardmodels.judge import JudgeArgs
from neuralese.rewardmodels.score import RewardModelArgs
from neuralese.rewards.combine import compute_rewards, resolve_reward
from neuralese.tiny import build_tiny_model, build_tokenizer, save_tiny

PLUGIN_ENV = Path(__file__).parent / "plugins" / "envs.py"
SHAPE = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
JUDGE_WORDS = [" Is it right? yes no"]


def addition_texts() -> list[str]:
    return env_texts(make_env("addition", {"digits": 3}).dataset("train", 200, seed=0))


def classifier(folder: Path, num_labels: int = 1, seed: int = 0) -> Path:
    tok = build_tokenizer(addition_texts())
    model = build_tiny_model(tok, SHAPE, seed, AutoModelForSequenceClassification, num_labels=num_labels)
    return save_tiny(model, tok, folder)


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory) -> Path:
    return classifier(tmp_path_factory.mktemp("rm") / "model")


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory) -> Path:
    tok = build_tokenizer(addition_texts() + JUDGE_WORDS)
    return save_tiny(build_tiny_model(tok, SHAPE, seed=1), tok, tmp_path_factory.mktemp("judge") / "model")


def problems(n: int = 7) -> tuple[list[str], list[str], dict]:
    """Prompts and completions of different lengths (padding matters), with their answers."""
    rows = make_env("addition", {"digits": 3}).dataset("test", n, seed=0)
    completions = [a[: 1 + i % 4] for i, a in enumerate(rows["answer"])]
    return list(rows["prompt"]), completions, {"answer": list(rows["answer"])}


def reward(name: str, args: dict, key: str = "rewards[0].fn"):
    return resolve_reward(name, args, key=key)


# ----------------------------------------------------------------------------- reward model


def test_scores_are_deterministic_and_a_batch_scores_what_each_sample_scores_alone(rm_dir):
    prompts, completions, _ = problems()
    rm = reward("reward_model", {"path": str(rm_dir), "batch_size": 3})
    batched = rm(prompts, completions)
    assert rm(prompts, completions) == batched  # bit for bit
    alone = [rm([p], [c])[0] for p, c in zip(prompts, completions)]
    # Right padding keeps every position; only float32 rounding of differently shaped matmuls differs.
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(alone), atol=1e-6, rtol=0)
    assert len(set(batched)) == len(batched)  # an untrained model still tells them apart
    assert rm(prompts * 3, completions * 3) == batched * 3 and rm.metrics()["distinct"] == len(prompts)


def test_conversational_prompts_go_through_the_chat_template(rm_dir):
    rm = reward("reward_model", {"path": str(rm_dir)})
    chat = [[{"role": "user", "content": "12+34="}]] * 2
    a, b = rm(chat, ["46", "47"])
    assert a != b and rm(chat[:1], ["46"]) == [a]


def test_scale_offset_calibration_and_abstention(rm_dir, tmp_path):
    prompts, completions, _ = problems()
    raw = torch.tensor(reward("reward_model", {"path": str(rm_dir)})(prompts, completions))
    scaled = reward("reward_model", {"path": str(rm_dir), "scale": -2.0, "offset": 0.5})(prompts, completions)
    torch.testing.assert_close(torch.tensor(scaled), -2.0 * raw + 0.5)
    mid = raw.median().item()
    gated = reward(
        "reward_model", {"path": str(rm_dir), "abstain_below": mid - 1e-3, "abstain_above": mid + 1e-3}
    )
    out = gated(prompts, completions)
    assert [v is None for v in out] == [abs(r - mid) < 1e-3 for r in raw.tolist()] and None in out
    assert gated.metrics()["answered"] == pytest.approx(sum(v is not None for v in out) / len(out))
    with pytest.raises(
        ConfigError, match=r"rewards\[0\]\.args\.calibrated: .*reward_model\.json' does not exist"
    ):
        reward("reward_model", {"path": str(rm_dir), "calibrated": True})
    folder = classifier(tmp_path / "calibrated")
    (folder / "reward_model.json").write_text(json.dumps({"calibration": {"scale": 2.0, "offset": -1.0}}))
    p = reward("reward_model", {"path": str(folder), "calibrated": True})(prompts, completions)
    torch.testing.assert_close(torch.tensor(p), torch.sigmoid(2.0 * raw - 1.0))


def test_a_reward_model_with_more_than_one_logit_is_refused(tmp_path):
    folder = classifier(tmp_path / "two", num_labels=2)
    with pytest.raises(CheckpointError) as e:
        reward("reward_model", {"path": str(folder)})
    assert str(e.value) == (
        f"rewards[0].args.path: {str(folder)!r} is a sequence classifier with 2 logits per sample (num_labels); "
        "a reward model gives one (num_labels: 1), as TRL's RewardTrainer trains it"
    )


def test_a_folder_without_a_classification_head_is_refused(tiny_dir):
    with pytest.raises(CheckpointError) as e:
        reward("reward_model", {"path": str(tiny_dir)})
    assert str(e.value).startswith(
        f"rewards[0].args.path: {str(tiny_dir)!r} has no classification head (its weights lack score.weight; "
        "the folder holds LlamaForCausalLM); expected a sequence classifier with one logit"
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        ({"pth": "x"}, "recipe: unknown key 'rewards[0].args.pth'; did you mean 'rewards[0].args.path'?"),
        ({"path": "x", "batch_size": 0}, "key 'rewards[0].args.batch_size' must be >= 1, got 0"),
        ({"path": "x", "scale": "big"}, "key 'rewards[0].args.scale' expects float"),
        ({}, "rewards[0].args.path: give the folder of the reward model"),
        ({"path": "/nonexistent/rm"}, "rewards[0].args.path: model folder '/nonexistent/rm' does not exist"),
        ({"path": "x", "abstain_below": 0.9, "abstain_above": 0.1}, "the first below the second"),
    ],
)
def test_reward_model_args_are_checked_like_a_recipe(args, fragment):
    with pytest.raises((ConfigError, CheckpointError)) as e:
        reward("reward_model", args)
    assert fragment in str(e.value)


@pytest.mark.parametrize("cls", [RewardModelArgs, JudgeArgs, CascadeArgs])
def test_every_numeric_reward_arg_declares_a_range(cls):
    for key, tp in numeric_fields(cls):
        assert range_of(tp) is not None, f"{cls.__name__}.{key}: declare its range (neuralese.ranges)"


# ----------------------------------------------------------------------------- judge


def test_a_judge_template_without_its_placeholder_is_refused(judge_dir):
    with pytest.raises(ConfigError) as e:
        reward("judge", {"path": str(judge_dir), "template": "{prompt} Is it right?"}, key="rewards[1].fn")
    assert str(e.value) == (
        "rewards[1].args.template: the judge template '{prompt} Is it right?' has no {completion} placeholder, "
        "so the judge would never see the answer it scores; e.g. '{prompt}{completion} Is this right?'"
    )
    with pytest.raises(ConfigError, match="is malformed"):
        reward("judge", {"path": str(judge_dir), "template": "{completion Is it right?"})


def test_judge_scores_yes_probabilities_batched_as_one_by_one(judge_dir):
    prompts, completions, columns = problems()
    args = {"path": str(judge_dir), "template": "{prompt}{completion} Is it right?"}
    judge = reward("judge", args)
    p = judge(prompts, completions, **columns)
    assert judge(prompts, completions, **columns) == p and all(0.0 < v < 1.0 for v in p)
    alone = [judge([a], [b])[0] for a, b in zip(prompts, completions)]
    torch.testing.assert_close(torch.tensor(p), torch.tensor(alone), atol=1e-6, rtol=0)
    both = reward("judge", {**args, "no_token": " no", "scale": 2.0, "offset": -1.0})(prompts, completions)
    assert all(-1.0 < v < 1.0 for v in both)
    assert both != [2 * v - 1 for v in p]  # normalised by p(yes) + p(no)
    ref = reward("judge", {**args, "template": "{prompt}{completion} Is it {answer} right?"})
    assert ref(prompts, completions, **columns) != p  # the column reaches the question


def test_judge_tokens_and_fields_are_checked(judge_dir):
    args = {"path": str(judge_dir), "template": "{prompt}{completion} Is it right?"}
    with pytest.raises(ConfigError, match=r"rewards\[0\]\.args\.yes_token: ' yes no' is 2 tokens"):
        reward("judge", {**args, "yes_token": " yes no"})
    judge = reward("judge", {**args, "template": "{completion} {solution}"})
    with pytest.raises(RewardError, match=r"field \{solution\} is neither prompt, completion nor a column"):
        judge(["1+1="], ["2"], answer=["2"])


# ----------------------------------------------------------------------------- cascade

STAGES = """
calls = []

def short_only(prompts, completions, **kw):
    '''Answers completions of one character (1.0), leaves the rest to the next stage.'''
    return [1.0 if len(c) == 1 else None for c in completions]

def length(prompts, completions, answer, **kw):
    calls.append(list(completions))
    return [float(len(c)) for c in completions]

def nothing(prompts, completions, **kw):
    return [None] * len(completions)
"""


@pytest.fixture
def stages(tmp_path) -> Path:
    path = tmp_path / "stages.py"
    path.write_text(textwrap.dedent(STAGES))
    return path


def cascade(stages: Path, *names: str, **extra):
    return reward("cascade", {"stages": [{"fn": f"{stages}:{n}"} for n in names], **extra})


def test_a_cascade_scores_each_sample_by_the_first_stage_that_answers(stages):
    c = cascade(stages, "short_only", "length")
    completions = ["7", "123", "4", "56"]
    stats: dict[str, float] = {}
    out, _ = compute_rewards([c], [1.0], ["p"] * 4, completions, {"answer": ["x"] * 4}, 5.0, stats)
    assert out.tolist() == [1.0, 3.0, 1.0, 2.0]
    length_calls = c.stages[1].__globals__["calls"]
    assert length_calls == [["123", "56"]]  # the costly stage saw only what the cheap one left
    assert stats["reward/cascade/stage0_short_only/given"] == 1.0
    assert stats["reward/cascade/stage0_short_only/answered"] == 0.5
    assert stats["reward/cascade/stage1_length/given"] == 0.5
    assert "time/reward/cascade_s" in stats and "time/reward/cascade/stage1_length/time_s" in stats


def test_a_cascade_whose_last_stage_answers_nothing_is_an_error(stages):
    c = cascade(stages, "short_only", "nothing")
    with pytest.raises(RewardError) as e:
        compute_rewards([c], [1.0], ["p"] * 3, ["7", "123", "56"], {}, 5.0)
    assert (
        "rewards[0].args.stages[1]: the last stage 'nothing' returned None for all 2 samples the stages "
        "before left to it; the last stage of a cascade must score them" in str(e.value)
    )
    out = cascade(stages, "nothing", "short_only")(["p"], ["7"])  # an earlier stage may pass everything on
    assert out == [1.0]


def test_a_cascade_audit_measures_agreement_and_keeps_the_first_answer(stages):
    c = cascade(stages, "short_only", "length", audit_share=1.0, agree_at=1.5)
    out = c(["p"] * 3, ["7", "4", "123"], answer=["x"] * 3)
    assert out == [1.0, 1.0, 3.0]
    m = c.metrics()
    assert m["audit/samples"] == 2 and m["audit/agreement"] == 1.0  # len 1 < 1.5 and 1.0 < 1.5: agree
    with pytest.raises(
        ConfigError, match=r"rewards\[0\]\.args\.stages: a cascade needs two or more stages, got 1"
    ):
        cascade(stages, "length")


# ----------------------------------------------------------------------------- in RL


def test_rl_steps_with_a_reward_model_and_a_cascade_log_their_calls(tiny_dir, rm_dir, tmp_path, capsys):
    from runs import run_config

    from neuralese.config import RewardConfig
    from neuralese.trainer import Trainer

    cfg = run_config(tiny_dir, tmp_path / "run", mode="hybrid", steps=2)
    cfg.rewards = [
        RewardConfig(fn="reward_model", args={"path": str(rm_dir)}),
        RewardConfig(
            fn="cascade",
            weight=0.5,
            args={
                "stages": [
                    {
                        "fn": "reward_model",
                        "args": {"path": str(rm_dir), "abstain_below": -10.0, "abstain_above": 0.0},
                    },
                    {"fn": "reward_model", "args": {"path": str(rm_dir)}},
                ]
            },
        ),
    ]
    Trainer(cfg).train()
    lines = step_rows(tmp_path / "run")
    step = lines[0]
    assert step["time/reward/reward_model_s"] > 0 and step["reward/reward_model/samples"] == 16
    given = step["reward/cascade/stage1_reward_model/given"]
    assert 0 <= given <= 1 and step["reward/cascade/stage0_reward_model/given"] == 1.0
    assert "accuracy" in step  # the environment's check, whatever the reward

    # The report puts the reward beside that check, a row per window of steps.
    from neuralese.cli import main

    assert main(["reward-model", "report", str(tmp_path / "run"), "--window", "1"]) == 0
    table = capsys.readouterr().out
    row = f"| 1-1 | {step['reward/mean']:.3f} | {step['accuracy']:.3f} | "
    assert row in table and f"| {given:.3f} |" in table, table
    assert "reward/cascade/stage1_reward_model/given" in table and "time/reward/reward_model_s" in table
    assert main(["reward-model", "report", str(tmp_path / "nowhere")]) == 2
    assert "holds no metrics.jsonl" in capsys.readouterr().err


# ----------------------------------------------------------------------------- training here


def write_recipe(tmp_path: Path, reward_model: dict, env: dict | None = None) -> Path:
    recipe = {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "env": env or {"name": "addition", "args": {"digits": 3}, "train_size": 64, "test_size": 8},
        "reward_model": {
            "tiny": {
                "hidden_size": 32,
                "num_layers": 1,
                "num_heads": 2,
                "intermediate_size": 64,
                "max_positions": 64,
            },
            "max_steps": 40,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "warmup_steps": 0,
            **reward_model,
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))
    return path


def test_reward_model_train_from_a_pairs_file_learns_held_out_pairs(tmp_path, capsys):
    """Chosen: the true sum; rejected: the sum with a digit appended. TRL's RewardTrainer must learn
    it well enough to order pairs of problems it never saw."""
    rows = make_env("addition", {"digits": 3}).dataset("train", 120, seed=0)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": p, "chosen": a, "rejected": a + str(len(p) % 10)}) + "\n"
            for p, a in zip(rows["prompt"], rows["answer"])
        )
    )
    recipe = write_recipe(tmp_path, {"pairs_file": str(pairs), "held_out_fraction": 0.25})
    assert main(["reward-model", "train", str(recipe), "--out", str(tmp_path / "rm")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    gear = json.loads((tmp_path / "rm" / "gear-0" / "reward_model.json").read_text())
    assert gear["train_pairs"] == 90 and gear["pairs"] == 30
    assert gear["pairwise_accuracy"] >= 0.9, gear
    assert printed["gears"][0]["pairwise_accuracy"] == gear["pairwise_accuracy"]
    rm = reward("reward_model", {"path": str(tmp_path / "rm" / "gear-0"), "calibrated": True})
    p_right, p_wrong = rm(["123+456="], ["579"])[0], rm(["123+456="], ["5791"])[0]
    assert p_right > p_wrong and 0 < p_wrong < p_right < 1


def test_reward_model_train_from_policy_samples_and_a_gear(tiny_dir, tmp_path):
    """Gear 0 from an untrained policy's samples judged by a plug-in environment's check; gear 1 on the
    labels gear 0 gives to a larger pool; both measured on the same held-out pairs."""
    env = {"name": f"{PLUGIN_ENV}:make", "train_size": 64, "test_size": 8}
    recipe = write_recipe(
        tmp_path,
        {
            "policy": str(tiny_dir),
            "prompts": 24,
            "held_out_prompts": 16,
            "max_new_tokens": 3,
            "max_steps": 5,
            "gears": [{"prompts": 40, "max_steps": 5}],
        },
        env,
    )
    assert main(["reward-model", "train", str(recipe), "--out", str(tmp_path / "rm")]) == 0
    report = json.loads((tmp_path / "rm" / "report.json").read_text())["gears"]
    assert [g["gear"] for g in report] == [0, 1]
    assert report[0]["labels"] == "environment check" and report[1]["labels"] == "gear-0"
    assert report[0]["pairs"] == report[1]["pairs"] > 0  # the same held-out pairs
    assert 0 <= report[1]["agreement_with_previous"] <= 1 and report[1]["pool_prompts"] == 40
    assert report[1]["pairs_right_order"] is None or 0 <= report[1]["pairs_right_order"] <= 1
    for g in report:
        assert 0 <= g["pairwise_accuracy"] <= 1 and g["calibration"]["samples"] == 16 * 8
        reward("reward_model", {"path": str(tmp_path / "rm" / f"gear-{g['gear']}")})  # loads as a reward


def test_a_pairs_file_is_checked_line_by_line(tmp_path, capfd):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        '{"prompt": "1+1=", "chosen": "2", "rejected": "3"}\n{"prompt": "1+2=", "chosen": "3"}\n'
    )
    recipe = write_recipe(tmp_path, {"pairs_file": str(pairs)})
    capfd.readouterr()
    assert main(["reward-model", "train", str(recipe)]) == 2
    err = capfd.readouterr().err.strip()
    assert err == f"neuralese reward-model: error: {pairs}: line 2: missing rejected (has prompt, chosen)"


def test_the_reward_model_recipe_is_the_quickstart_but_for_its_reward():
    """recipes/quickstart_reward_model.yaml may differ from the quickstart only where it says why."""
    from neuralese.config import load_config, to_dict

    root = Path(__file__).resolve().parents[1] / "recipes"
    quick, rm = (
        to_dict(load_config(root / name)) for name in ("quickstart.yaml", "quickstart_reward_model.yaml")
    )
    for section in ("seed", "model", "env", "pretrain", "neuralese", "eval"):
        assert rm[section] == quick[section], section
    assert {**rm["rl"], "beta": 0.0} == quick["rl"] and rm["rl"]["beta"] > 0
    assert rm["rewards"][0]["fn"] == "reward_model" and quick["rewards"] is None
