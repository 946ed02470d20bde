"""A planner over codes (neuralese.planner): the task's views, stage 0 of both models through the real
commands, RL on the planner with the decoder's answers as what the rewards score, the shuffled-plan
control, and clear errors for tasks and recipes that have no plan."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from neuralese.cli import main
from neuralese.config import load_config
from neuralese.envs import load_split, make_env
from neuralese.errors import ConfigError, EnvError
from neuralese.load import load_policy
from neuralese.planner import Planned
from neuralese.planner.pretrain import check_planner_run
from neuralese.rewards.match import exact_match

TASK = {"env": "multiplication", "args": {"digits": 2, "cot": True}}

SECTIONS = """\
output_dir: {folder}/run
model:
  path: {folder}/planner
  codec: {folder}/codec
  tiny: {{hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64, max_positions: 40}}
env:
  name: neuralese.planner:planned
  args: {{env: multiplication, args: {{digits: 2, cot: true}}, decoder: {folder}/decoder, decoder_tokens: 5}}
  train_size: 512
  test_size: 32
pretrain: {{max_steps: 40, batch_size: 16}}
planner: {{decoder_max_steps: 60}}
rl: {{steps: 2, prompts_per_step: 4, samples_per_prompt: 4, micro_batch_per_device: 16, learning_rate: 1.0e-3,
      max_new_tokens: 8}}
eval: {{n: 8, max_new_tokens: 8}}
log: {{save_every: 2, completions_every: 1, trackers: []}}
"""


def view(name: str, **kw) -> Planned:
    return make_env("neuralese.planner:planned", {**TASK, "view": name, **kw})


def test_the_views_cut_each_completion_into_plan_and_answer():
    whole = make_env("multiplication", TASK["args"]).dataset("train", 16, seed=3)
    plans = view("plan").dataset("train", 16, seed=3)
    decode = view("decode").dataset("train", 16, seed=3)
    assert plans["prompt"] == whole["prompt"]
    for i in range(16):
        plan = plans["completion"][i]
        assert plan.endswith("####") and plan + whole["answer"][i] == whole["completion"][i]
        assert plans["answer"][i] == plan
        assert decode["prompt"][i] == whole["prompt"][i] + plan
        assert decode["completion"][i] == decode["answer"][i] == whole["answer"][i]
    # each view is scored on what its model writes: the plan exactly, or the task's answer
    assert view("plan").check(plans["prompt"], plans["completion"], answer=plans["answer"]) == [1.0] * 16
    assert view("plan").check(
        plans["prompt"][:1], [plans["completion"][0][1:]], answer=plans["answer"][:1]
    ) == [0.0]
    assert view("decode").check(decode["prompt"], decode["answer"], answer=decode["answer"]) == [1.0] * 16


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            {"env": "addition", "args": {"digits": 2}},
            r"row 0 \(view 'plan'\): the completion '\d+' is only its answer",
        ),
        (
            {"env": "addition", "args": {"digits": 4, "teacher_drop_final_carry": 1.0}},
            r"row \d+ \(view 'plan'\): the completion '\d+' does not end with the answer",
        ),
    ],
)
def test_a_task_without_a_plan_is_refused_by_row(task, expected):
    env = make_env("neuralese.planner:planned", {**task, "view": "plan"})
    with pytest.raises(EnvError, match=expected):
        load_split(env, "train", 64, 0, "neuralese.planner:planned")


def test_bad_planner_arguments_are_named():
    with pytest.raises(EnvError, match="view 'planned' scores the answer a decoder writes.*set decoder"):
        make_env("neuralese.planner:planned", TASK)
    with pytest.raises(EnvError, match="view must be one of planned, plan, decode, got 'plans'"):
        make_env("neuralese.planner:planned", {**TASK, "view": "plans"})
    with pytest.raises(EnvError, match="plans must be 'own' or 'shuffled', got 'mine'"):
        make_env("neuralese.planner:planned", {**TASK, "view": "plan", "plans": "mine"})
    with pytest.raises(EnvError, match="batch_size must be a positive integer, got 0"):
        make_env("neuralese.planner:planned", {**TASK, "view": "plan", "batch_size": 0})
    with pytest.raises(EnvError, match="plans 'shuffled' applies to view 'planned'.*got view 'plan'"):
        make_env("neuralese.planner:planned", {**TASK, "view": "plan", "plans": "shuffled"})
    with pytest.raises(
        EnvError, match=r"env 'multiplication': the factory rejected env.args.args \{'digits': 0\}"
    ):
        make_env(
            "neuralese.planner:planned", {"env": "multiplication", "args": {"digits": 0}, "view": "plan"}
        )
    env = view("planned", decoder="no/such/decoder")
    with pytest.raises(EnvError, match="env.args.decoder 'no/such/decoder' does not exist"):
        env.check(["12*34="], ["x####"], answer=["1"])


def recipe_in(folder: Path, codec_recipe: Path) -> Path:
    """The test codec's recipe (its env left out) with a planner's sections, whose folders are in `folder`."""
    text = codec_recipe.read_text().replace("env: {name: addition, args: {digits: 2}}\n", "")
    path = folder / "planner.yaml"
    path.write_text(text + SECTIONS.format(folder=folder))
    return path


def test_a_planner_recipe_needs_the_planner_env_and_a_decoder(codec_recipe, tmp_path):
    path = recipe_in(tmp_path, codec_recipe)
    check_planner_run(load_config(path))
    with pytest.raises(ConfigError, match="key 'env.name' is 'multiplication'; a planner run's environment"):
        check_planner_run(load_config(path, ["env.name=multiplication", "env.args={}"]))
    with pytest.raises(ConfigError, match="key 'env.args.decoder' must name the decoder's folder"):
        check_planner_run(load_config(path, ["env.args={env: multiplication, decoder: null}"]))
    assert main(["planner", "pretrain", str(path), "--set", "env.name=multiplication"]) == 2


@pytest.fixture(scope="module")
def planner_run(codec_recipe, tmp_path_factory) -> Path:
    """A codec on the task's text, stage 0 of the decoder and of a dense planner, and 2 RL steps, all
    through the real commands (about 20 s)."""
    folder = tmp_path_factory.mktemp("planner")
    recipe = recipe_in(folder, codec_recipe)
    assert main(["codec", "train", str(recipe), "--out", str(folder / "codec")]) == 0
    assert main(["planner", "pretrain", str(recipe)]) == 0
    assert main(["train", str(recipe)]) == 0
    return folder


def test_stage_0_trains_each_model_on_its_view(planner_run):
    decoder = json.loads((planner_run / "decoder" / "pretrain_log.json").read_text())
    planner = json.loads((planner_run / "planner" / "pretrain_log.json").read_text())
    assert decoder["task"]["env_args"]["view"] == "decode" and planner["task"]["env_args"]["view"] == "plan"
    assert decoder["phases"][0]["steps"] == 60 and planner["phases"][0]["steps"] == 40
    # the decoder writes the task's tokens, the planner the codec's codes
    assert "dense_tokenizer.json" in {p.name for p in (planner_run / "planner").iterdir()}
    assert "dense_tokenizer.json" not in {p.name for p in (planner_run / "decoder").iterdir()}


def test_rewards_score_the_decoders_answer_to_the_plan_or_the_next_one(planner_run):
    """What RL and eval score is the decoder's greedy answer after `prompt + plan`: computed here by
    hand from the decoder's own folder, for the true plans and for the shuffled control."""
    args = {**TASK, "decoder": str(planner_run / "decoder"), "decoder_tokens": 5}
    rows = view("plan").dataset("test", 8, seed=0)
    answers = make_env("multiplication", TASK["args"]).dataset("test", 8, seed=0)["answer"]
    plans, prompts = rows["completion"], rows["prompt"]
    decoder = load_policy(planner_run / "decoder")
    by_hand = decoder.generate([p + q for p, q in zip(prompts, plans)], 5)
    rolled = decoder.generate([p + q for p, q in zip(prompts, plans[1:] + plans[:1])], 5)
    own = make_env("neuralese.planner:planned", args)
    shuffled = make_env("neuralese.planner:planned", {**args, "plans": "shuffled"})
    assert own.check(prompts, plans, answer=answers) == exact_match(prompts, by_hand, answer=answers)
    assert shuffled.check(prompts, plans, answer=answers) == exact_match(prompts, rolled, answer=answers)
    assert own.decoded(prompts, plans) == by_hand and shuffled.decoded(prompts, plans) == rolled


def test_rl_trains_the_planner_and_eval_takes_the_shuffled_control(planner_run, capsys):
    run = planner_run / "run"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]
    args = {**TASK, "decoder": str(planner_run / "decoder"), "decoder_tokens": 5, "plans": "shuffled"}
    results = []
    for flags in (["--env-set", "plans=shuffled"], ["--env-args", json.dumps(args)]):
        capsys.readouterr()
        assert main(["eval", str(run), "--n", "8", "--quiet", *flags]) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert results[0] == results[1] and results[0]["n"] == 8


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("plans", "argument --env-set: expects KEY=VALUE such as plans=shuffled, got 'plans'"),
        ("args..digits=3", "expects KEY=VALUE"),
        ("plans=[", "argument --env-set 'plans=\\[': the value is not YAML"),
        ("decoder_tokens.x=1", "env arg 'decoder_tokens' is 5, not a mapping"),
        (
            "args.digits=0",
            "env 'multiplication': the factory rejected env.args.args {'digits': 0, 'cot': True}",
        ),
    ],
)
def test_a_bad_env_set_is_named(planner_run, capsys, flag, expected):
    capsys.readouterr()
    assert main(["eval", str(planner_run / "run"), "--n", "2", "--quiet", "--env-set", flag]) == 2
    assert re.search(expected, capsys.readouterr().err)


def test_a_planner_run_resumes_and_exports_like_any_run(planner_run, tmp_path, capsys):
    """The planner is the trainer's policy and the decoder the environment's: a resumed run goes on from
    its last checkpoint, and the export evaluates through the same decoder as the run."""
    run = tmp_path / "run"
    shutil.copytree(planner_run / "run", run)
    assert main(["train", str(run), "--resume", "--set", "rl.steps=3"]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert main(["export", str(run), str(tmp_path / "export")]) == 0
    results = []
    for path in (run, tmp_path / "export"):
        capsys.readouterr()
        assert main(["eval", str(path), "--n", "8", "--quiet"]) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert results[0] == results[1]
