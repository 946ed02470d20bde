"""A run a researcher can live with, through the real CLI: a run folder that opens from anywhere
and outlives its base model, commands that read what the run knows, the evaluation before RL, one
metrics row per step, a console that says what happens, stage 0 that keeps an earlier model, and
training from Python that equals training from the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from runs import PLUGINS, metric_rows, step_rows

import neuralese
from neuralese.cli import main
from neuralese.load import load_policy

RECIPE = """\
seed: 0
output_dir: {out}
model: {{path: {model}}}
env: {{name: addition, args: {{digits: 3}}, train_size: 64, test_size: 16}}
rewards: [{{fn: "{plugins}:digit_share"}}]
neuralese: {{mode: latent, num_thoughts: 2, tbptt_window: 1}}
rl: {{steps: 2, prompts_per_step: 4, samples_per_prompt: 4, micro_batch_per_device: 16,
      learning_rate: 1.0e-3, max_new_tokens: 4}}
eval: {{n: 6, max_new_tokens: 4, batch_size: 4, samples: 2}}
log: {{save_every: 2, completions_every: 1, eval_every: 1, trackers: []}}
"""


def recipe(folder: Path, model: Path, out: Path) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(RECIPE.format(out=out, model=model, plugins=PLUGINS))
    return path


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def trained(tiny_dir, tmp_path, capsys):
    """A run trained through the CLI on a copy of the tiny model (which the tests may then delete),
    with what the command printed: (run folder, base model copy, final JSON line, stderr)."""
    base = shutil.copytree(tiny_dir, tmp_path / "base-model")
    run = tmp_path / "runs" / "run"
    assert main(["train", str(recipe(tmp_path, base, run))]) == 0
    printed = capsys.readouterr()
    return run, base, last_json(printed.out), printed.err


def test_a_run_writes_its_evaluation_at_step_0_and_one_row_per_step(trained):
    run, _, result, err = trained
    rows = metric_rows(run)
    assert [r["step"] for r in rows] == [0, 1, 2]  # one row per step: the final evaluation joins step 2's
    assert {k for k in rows[0] if not k.startswith("eval/")} == {"step"}  # before any RL step
    assert rows[2]["eval/accuracy"] == result["eval/accuracy"] and "loss" in rows[2]
    # Sampled (pass@k) before the first step and at the end, greedy on the way (log.eval_every).
    assert "eval/pass_at_k" in rows[0] and "eval/pass_at_k" in rows[2]
    assert "eval/accuracy" in rows[1] and "eval/pass_at_k" not in rows[1]
    assert result["start"] == {k: v for k, v in rows[0].items() if k != "step"}
    # The console: a banner while the model loads, each evaluation, and the two accuracies at the end.
    assert "neuralese train: loading the model" in err and f"  run        {run} (new)" in err
    assert "device     cpu x 1, float32" in err and "mode       latent, tbptt_window 1" in err
    assert "  size       " in err and "parameters" in err
    assert "step 0 | eval accuracy" in err and "step 2 | eval accuracy" in err
    assert f"eval accuracy {rows[0]['eval/accuracy']} at step 0 -> {result['eval/accuracy']} after RL" in err


def test_a_moved_run_evaluates_from_anywhere_with_no_flags_as_it_did_itself(
    trained, tmp_path, capsys, monkeypatch
):
    run, base, result, _ = trained
    (tmp_path / "elsewhere").mkdir()
    shutil.move(run, tmp_path / "elsewhere" / "moved-run")
    shutil.rmtree(base)  # the base model is gone (moved, deleted, or trained again): the run kept a copy
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["eval", "moved-run", "--quiet"]) == 0
    printed = last_json(capsys.readouterr().out)
    for key in ("accuracy", "n", "mean_generated_positions", "pass_at_1", "pass_at_k", "k"):
        assert printed[key] == result[f"eval/{key}"], key  # the run's own final evaluation
    assert main(["eval", "moved-run", "--quiet", "--n", "3", "--max-new-tokens", "2"]) == 0
    assert last_json(capsys.readouterr().out)["n"] == 3  # a flag overrides what the run used
    assert main(["inspect", "moved-run"]) == 0  # the first test problem, the run's answer budget
    table = capsys.readouterr().out
    assert table.startswith("prompt: '") and "answer: '" in table
    assert main(["export", "moved-run", "exported"]) == 0
    capsys.readouterr()
    assert main(["eval", "exported", "--quiet"]) == 0  # an exported folder keeps the task too
    assert last_json(capsys.readouterr().out)["accuracy"] == result["eval/accuracy"]


def test_a_run_resumes_by_its_folder_alone(trained, tmp_path, capsys, monkeypatch):
    run, _, _, _ = trained
    monkeypatch.chdir(tmp_path / "runs")
    assert main(["train", "run", "--resume", "--set", "rl.steps=3"]) == 0
    err = capsys.readouterr().err
    assert f"continuing from {Path('run') / 'checkpoints' / 'step-2'} (step 2 of 3)" in err
    assert "rl.steps: 2 -> 3" in err and "output_dir" not in err  # the run is where its folder is
    assert [r["step"] for r in metric_rows(run)] == [0, 1, 2, 3]  # step 2 keeps its final evaluation
    assert main(["train", str(run)]) == 2  # without --resume a run folder is not started over
    assert "already holds a run" in capsys.readouterr().err


def test_training_from_python_equals_training_from_the_cli(tiny_dir, tmp_path, capsys):
    cli_run, py_run = tmp_path / "cli", tmp_path / "python"
    path = recipe(tmp_path, tiny_dir, cli_run)
    assert main(["train", str(path)]) == 0
    cli_result = last_json(capsys.readouterr().out)
    cfg = neuralese.load_config(path)
    py_result = neuralese.train(cfg, ["rl.steps=2"], out=py_run)
    assert cfg.output_dir == str(cli_run)  # the caller's config is not changed
    assert {k: v for k, v in cli_result.items() if k not in ("stage", "output_dir")} == py_result
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]  # noqa: E731
    assert strip(step_rows(cli_run)) == strip(step_rows(py_run))
    a, b = load_policy(cli_run), load_policy(py_run)
    for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(x, y), name


def test_stage0_keeps_an_earlier_model_unless_told(tmp_path, capsys):
    out = tmp_path / "as-is"
    path = tmp_path / "stage0.yaml"
    path.write_text(
        "seed: 0\n"
        f"model: {{path: {out}, tiny: {{hidden_size: 16, num_layers: 1, num_heads: 2, intermediate_size: 32}}}}\n"
        "env: {name: addition, args: {digits: 2}, train_size: 32, test_size: 8}\n"
        "pretrain: {max_steps: 3, batch_size: 8, warmup_steps: 1}\n"
        "eval: {n: 4, max_new_tokens: 3}\n"
    )
    assert main(["pretrain", str(path)]) == 0
    printed = capsys.readouterr()
    line = last_json(printed.out)
    assert line["model"] == str(out) and line["n"] == 4 and 0 <= line["accuracy"] <= 1
    assert "stage 0: 100%" in printed.err and "3/3" in printed.err  # one bar over the steps, with its ETA
    assert f"as-is greedy accuracy {line['accuracy']} on 4 test problems" in printed.err
    weights = (out / "model.safetensors").read_bytes()
    assert main(["pretrain", str(path)]) == 2
    assert "already holds a model (config.json)" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == weights  # not replaced
    assert main(["pretrain", str(path), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--quiet"]) == 0  # the as-is folder knows its task
    assert last_json(capsys.readouterr().out)["n"] == 4


def test_a_split_smaller_than_asked_is_said_before_the_model_loads(tiny_dir, tmp_path, capsys):
    """A plug-in that returns 3 rows where 64 are asked: the run goes on with them, and says so first."""
    envs = Path(__file__).parent / "bad_inputs" / "plugins" / "envs.py"
    path = recipe(tmp_path, tiny_dir, tmp_path / "run")
    sets = [f"env.name={envs}:make_bad_row", "env.args={prompt: '3+3=', answer: '6', at: 2}", "rewards=null"]
    assert main(["train", str(path), *[x for s in sets for x in ("--set", s)]]) == 0
    err = capsys.readouterr().err
    warning = (
        f"neuralese train: warning: env '{envs}:make_bad_row': dataset('train', n=64) returned 3 rows where "
        "env.train_size asks for 64: the run uses these 3"
    )
    assert warning in err and err.index(warning) < err.index("loading the model")


def test_answers_carry_their_thoughts_and_log_probs(tiny_dir):
    from neuralese.config import ModelConfig, NeuraleseConfig

    latent = NeuraleseConfig(mode="latent", num_thoughts=3)
    policy = neuralese.NeuralesePolicy.from_pretrained(
        tiny_dir, ModelConfig(add_thought_token=True), config=latent
    )
    prompts = ["12+34=", "5+6="]
    found = policy.answers(prompts, max_new_tokens=4, temperature=1.0, seed=3)
    assert [a.text for a in found] == policy.generate(prompts, max_new_tokens=4, temperature=1.0, seed=3)
    ids, mask = policy.encode(prompts)
    ro = policy.rollout(ids, mask, 4, 1.0, torch.Generator().manual_seed(3))
    for b, answer in enumerate(found):
        assert answer.thought_positions == [0, 1, 2] and answer.thoughts.shape == (3, policy.hidden_size)
        assert len(answer.logprobs) == 3 + len(answer.token_ids)  # every generated position, thoughts first
        assert answer.logprob == pytest.approx(ro.logprobs[b].sum().item(), abs=1e-6)
        assert answer.logprobs[:3] == [0.0, 0.0, 0.0]  # a deterministic thought draws nothing
        assert all(lp < 0 for lp in answer.logprobs[3:])


def test_a_run_without_a_gate_says_so_in_its_report(tiny_dir, tmp_path):
    """input: latent_only: no gate metric is logged, and report.png's gate panel says n/a (the trainer's
    report differs from one drawn without the note only there), not an empty panel."""
    import matplotlib.image
    from runs import run_config

    from neuralese.runlog import REPORT_PANELS, RunLog
    from neuralese.trainer import Trainer

    cfg = run_config(tiny_dir, tmp_path / "run", "latent", steps=1)
    cfg.neuralese.input = "latent_only"
    trainer = Trainer(cfg)
    trainer.train()
    assert not trainer.policy.adapter.has_gate
    assert all("feedback/gate_mean_abs" not in r for r in metric_rows(tmp_path / "run"))
    noted = matplotlib.image.imread(tmp_path / "run" / "report.png")
    plain = RunLog(tmp_path / "run").report(title="addition / latent / grpo")  # the same rows, no note
    plain = matplotlib.image.imread(plain)
    columns = (noted != plain).any(axis=(0, 2)).nonzero()[0]
    gate = [label for label, _ in REPORT_PANELS].index("gate |tanh(lambda)|")
    width = noted.shape[1] / len(REPORT_PANELS)
    assert len(columns) and gate * width <= columns.min() and columns.max() < (gate + 1) * width
