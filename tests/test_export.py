"""Export and loading: an exported folder answers exactly as the policy that was trained, plain
transformers loads its language model, and no export is ever refused silently or left half-written.

The runs are real: a tiny model taught addition briefly, then two RL steps with learning rates
high enough that the weights (LoRA, or all of them) and the gate move.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs import run_config

import neuralese
from neuralese.cli import main
from neuralese.config import (
    RunConfig,
    TinyModelConfig,
)
from neuralese.envs import env_texts, make_env
from neuralese.errors import CheckpointError
from neuralese.export import export
from neuralese.load import load_policy, locate
from neuralese.policy import NeuralesePolicy
from neuralese.tiny import THOUGHT, build_tiny_model, build_tokenizer, save_tiny
from neuralese.trainer import Trainer

PROMPTS = ["123+456=", "9+1=", "12+3=", "999+999=", "5+55=", "321+7=", "40+404="]


def export_run(base: Path, out: Path, mode: str, lora: int) -> RunConfig:
    """Two RL steps; learning rates high enough that weights and gate move visibly (LoRA needs more)."""
    return run_config(
        base,
        out,
        mode,
        lora=lora,
        rewards=("digit_share",),
        prompts_per_step=2,
        learning_rate=1e-2 if lora else 3e-3,
        feedback_learning_rate=0.3 if lora else 0.1,
        log={"save_every": 1, "keep_checkpoints": 2},
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, busy CPU two threads
    spin-wait each other: one thread makes this module several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny model taught addition for a moment (plain next-token steps, 0-3 thought tokens after
    each prompt as `pretrain.thought_tokens_max` does), so that its greedy answers differ from
    prompt to prompt: an untrained one repeats one token everywhere, which would make equal
    generations a weak test. (Stage 0 through TRL costs tens of seconds more for the same model.)"""
    env = make_env("addition", {"digits": 3})
    rows = env.dataset("train", 500, seed=0)
    tok = build_tokenizer(env_texts(rows))
    tiny = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=64)
    model = build_tiny_model(tok, tiny)
    rng = random.Random(0)
    texts = [
        p + THOUGHT * rng.randint(0, 3) + a + tok.eos_token for p, a in zip(rows["prompt"], rows["answer"])
    ]
    enc = tok(texts, return_tensors="pt", padding=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    order = torch.Generator().manual_seed(0)
    for _ in range(300):
        i = torch.randint(0, len(texts), (32,), generator=order)
        ids, mask = enc["input_ids"][i], enc["attention_mask"][i]
        model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
        opt.step()
        opt.zero_grad()
    return save_tiny(model, tok, tmp_path_factory.mktemp("export-base") / "model")


RUNS = {"lora-latent": ("latent", 4), "full-hybrid": ("hybrid", 0)}


@pytest.fixture(scope="module")
def runs(base, tmp_path_factory) -> dict[str, tuple[Trainer, Path]]:
    """(trainer, exported folder) for a LoRA run in latent mode and a full run in hybrid mode."""
    result = {}
    for name, (mode, lora) in RUNS.items():
        root = tmp_path_factory.mktemp(name)
        trainer = Trainer(export_run(base, root / "run", mode, lora))
        trainer.train()
        trainer.policy.eval()
        result[name] = trainer, export(root / "run", root / "export")
    return result


@pytest.fixture(params=list(RUNS))
def trained(request, runs) -> tuple[Trainer, Path]:
    return runs[request.param]


def rollout_of(policy, ignore_eos: bool = False):
    """Answers to PROMPTS sampled at temperature 1 with a fixed seed, thoughts included."""
    ids, mask = policy.encode(PROMPTS)
    return policy.rollout(ids, mask, 8, 1.0, torch.Generator().manual_seed(0), ignore_eos=ignore_eos)


def test_round_trip_generations_equal_the_training_policy(trained, base):
    trainer, out = trained
    policy = trainer.policy
    assert policy.adapter.gate().abs().mean() > 0.05  # the gate opened: thoughts change the inputs
    ours = policy.generate(PROMPTS, max_new_tokens=8)
    # Sampled answers and their log-probs, not only greedy text (two training steps may leave every
    # greedy answer alike): with the gate closed they differ, so the round trip tests the adapter;
    # the export gives the same ones. Fixed length (ignore_eos), so the two records line up.
    sampled = rollout_of(policy)
    closed = copy.deepcopy(policy)
    with torch.no_grad():
        closed.adapter.gate_logit.zero_()
    gated, shut = rollout_of(policy, ignore_eos=True), rollout_of(closed, ignore_eos=True)
    assert not torch.allclose(gated.logprobs, shut.logprobs, atol=1e-3), "the trained gate changes nothing"

    exported = NeuralesePolicy.from_pretrained(out)
    assert exported.generate(PROMPTS, max_new_tokens=8) == ours
    again = rollout_of(exported)
    assert torch.equal(again.input_ids, sampled.input_ids)
    torch.testing.assert_close(again.logprobs, sampled.logprobs, atol=1e-5, rtol=0)
    assert exported.model.__class__.__name__ == "LlamaForCausalLM"  # merged: no peft wrapper left

    meta = json.loads((out / "neuralese.json").read_text())
    cfg = trainer.cfg
    assert meta["neuralese"]["mode"] == cfg.neuralese.mode
    assert meta["neuralese"]["num_thoughts"] == 3 and meta["neuralese"]["layer"] == -1
    assert meta["neuralese"]["projection"] == "linear"
    assert meta["training"]["tbptt_window"] == 2 and meta["training"]["lora_r"] == cfg.model.lora.r
    assert meta["source"]["step"] == 2 and meta["source"]["base_model"] == str(base)
    assert Path(meta["source"]["run"]) == Path(cfg.output_dir).resolve()


PLAIN_LOAD = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
outs, prompts, dest = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
for i, out in enumerate(outs):
    tok = AutoTokenizer.from_pretrained(out)
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        logits = model(**enc).logits
    torch.save({"input_ids": enc["input_ids"], "logits": logits}, f"{dest}/{i}.pt")
assert not any(m == "neuralese" or m.startswith("neuralese.") for m in sys.modules), "neuralese was imported"
"""


def test_exported_language_model_loads_with_plain_transformers(runs, base, tmp_path):
    outs = [str(out) for _, out in runs.values()]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, json.dumps(outs), json.dumps(PROMPTS), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    untrained = NeuralesePolicy.from_pretrained(base).model
    for i, (trainer, _) in enumerate(runs.values()):
        got = torch.load(tmp_path / f"{i}.pt", weights_only=True)
        ids, mask = trainer.policy.encode(PROMPTS)
        assert torch.equal(got["input_ids"], ids)
        with torch.no_grad():  # the policy's language model with feedback off (LoRA, if any, on)
            expected = trainer.policy.model(input_ids=ids, attention_mask=mask).logits
            before = untrained(input_ids=ids, attention_mask=mask).logits
        real = mask.bool()
        torch.testing.assert_close(got["logits"][real], expected[real], atol=2e-5, rtol=0)
        assert (got["logits"][real] - before[real]).abs().max() > 1e-2  # RL moved the weights


def test_every_kind_of_folder_loads_to_the_same_policy(trained, base):
    trainer, out = trained
    run = Path(trainer.cfg.output_dir)
    expected = trainer.policy.generate(PROMPTS, max_new_tokens=8)
    for path in (run, run / "checkpoints" / "step-2", out):
        assert load_policy(path).generate(PROMPTS, max_new_tokens=8) == expected, path
    older = load_policy(run / "checkpoints" / "step-1")  # an earlier checkpoint is its own policy
    assert not torch.equal(older.adapter.gate_logit, trainer.policy.adapter.gate_logit)
    plain = load_policy(base)
    assert plain.config.mode == "off" and not plain.feedback_on


def test_eval_reads_exports_and_checkpoints_alike(trained, capsys):
    trainer, out = trained
    run = Path(trainer.cfg.output_dir)
    results = []
    for path in (out, run / "checkpoints" / "step-2", run):
        argv = ["eval", str(path), "--env", "addition", "--env-args", "{digits: 3}", "--n", "6", "--quiet"]
        assert main(argv) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert results[0] == results[1] == results[2]
    assert results[0]["n"] == 6 and results[0]["mean_generated_positions"] > 0


def test_load_policy_takes_a_run_and_its_checkpoints_from_pretrained_a_model_folder(trained):
    trainer, _ = trained
    run = Path(trainer.cfg.output_dir)
    expected = trainer.policy.generate(PROMPTS, max_new_tokens=8)
    for path in (run, run / "checkpoints" / "step-2"):  # as `neuralese eval` and `inspect` take them
        assert neuralese.load_policy(path).generate(PROMPTS, max_new_tokens=8) == expected, path
        with pytest.raises(CheckpointError, match=r"not a model folder .* neuralese\.load_policy\(path\)"):
            NeuralesePolicy.from_pretrained(path)


def test_the_eval_check_reads_the_columns_every_reward_gets(trained, capsys):
    _, out = trained
    env = f"{Path(__file__).parent / 'plugins' / 'envs.py'}:make_counted"
    assert main(["eval", str(out), "--env", env, "--n", "5", "--samples", "2", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["accuracy"] == result["pass_at_1"] == 1.0


def test_accuracy_is_the_check_an_environment_names(trained, capsys):
    """`check` decides accuracy, not the first reward function (which most samples fail here)."""
    _, out = trained
    plugins = Path(__file__).parent / "plugins" / "envs.py"
    scores = {}
    for make in ("make", "make_checked"):
        assert main(["eval", str(out), "--env", f"{plugins}:{make}", "--n", "8", "--quiet"]) == 0
        scores[make] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"]
    assert scores["make_checked"] == 1.0 > scores["make"]
    assert main(["eval", str(out), "--env", f"{plugins}:make_bad_check", "--n", "2", "--quiet"]) == 2
    assert "whose check is 'positions_add_up'; expected a function" in capsys.readouterr().err


def test_the_shuffled_control_needs_thoughts_and_takes_any_batch(trained, base, capsys):
    _, out = trained
    argv = ["--env", "addition", "--env-args", "{digits: 3}", "--thoughts", "shuffled", "--quiet"]
    assert main(["eval", str(out), *argv, "--n", "5", "--batch-size", "2"]) == 0  # a last batch of one
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 5
    assert main(["eval", str(base), *argv, "--n", "4"]) == 2
    assert "this policy has neuralese mode 'off'" in capsys.readouterr().err
    assert main(["eval", str(out), *argv, "--n", "1"]) == 2
    assert (
        "it needs at least 2 problems (n=1) and a batch size of at least 2 (batch_size=64)"
        in capsys.readouterr().err
    )
    assert main(["eval", str(out), *argv, "--n", "4", "--batch-size", "1"]) == 2
    assert "(n=4) and a batch size of at least 2 (batch_size=1)" in capsys.readouterr().err


def test_export_refuses_a_non_empty_folder_unless_asked(trained, tmp_path, capsys):
    trainer, out = trained
    run = Path(trainer.cfg.output_dir)
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert main(["export", str(run), str(target)]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and "--overwrite" in err
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]

    assert main(["export", str(run / "checkpoints" / "step-1"), str(target), "--overwrite"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["step"] == 1 and Path(line["out"]) == target
    assert not (target / "notes.txt").exists() and (target / "feedback.safetensors").is_file()
    assert json.loads((target / "neuralese.json").read_text())["source"]["step"] == 1
    with pytest.raises(CheckpointError, match="contains it"):
        export(run / "checkpoints" / "step-2", run, overwrite=True)  # would delete the run itself
    assert (run / "checkpoints" / "step-2" / "manifest.json").is_file()


def test_an_export_that_fails_midway_leaves_no_folder(trained, tmp_path, monkeypatch):
    """The disk fills up after the model weights are written, while the feedback weights are."""
    trainer, out = trained
    run = Path(trainer.cfg.output_dir)
    import neuralese.policy

    written = []

    def disk_full(tensors, filename, *args, **kwargs):
        written.extend(p.name for p in Path(filename).parent.iterdir())
        raise OSError(28, "No space left on device", filename)

    monkeypatch.setattr(neuralese.policy, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export(run, tmp_path / "fresh")
    assert "model.safetensors" in written  # it did fail midway
    assert not (tmp_path / "fresh").exists()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(OSError):
        export(run, out, overwrite=True)  # a failed overwrite keeps the old export whole
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary folder left behind
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


def test_broken_sources_name_the_path_and_what_is_missing(trained, tmp_path):
    trainer, _ = trained
    run = tmp_path / "run"
    shutil.copytree(trainer.cfg.output_dir, run)
    ckpt = run / "checkpoints" / "step-2"
    with pytest.raises(CheckpointError, match="no such folder"):
        locate(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither config.json, config.yaml"):
        locate(tmp_path / "empty")

    data = (ckpt / "feedback.safetensors").read_bytes()
    (ckpt / "feedback.safetensors").write_bytes(data[:-8] + bytes(8))
    with pytest.raises(CheckpointError, match="feedback.safetensors does not match its checksum"):
        load_policy(ckpt)
    shutil.rmtree(ckpt)
    assert locate(run).step == 1  # the newest complete checkpoint left

    (run / "checkpoints" / "step-1" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"run folder has no complete checkpoint"):
        load_policy(run)
    with pytest.raises(CheckpointError, match=r"step-1: has no manifest.json"):
        load_policy(run / "checkpoints" / "step-1")

    cfg = (run / "config.yaml").read_text()
    other = shutil.copytree(trainer.cfg.output_dir, tmp_path / "moved")
    (other / "config.yaml").write_text(cfg.replace(trainer.cfg.model.path, str(tmp_path / "gone")))
    assert load_policy(other).generate(PROMPTS[:1], max_new_tokens=2)  # the run's own copy of its base
    shutil.rmtree(other / "base")  # as a run folder written before runs kept one: model.path it is
    with pytest.raises(CheckpointError, match=r"config.yaml: model.path .*gone.* does not exist"):
        load_policy(other)
    (other / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match=r"config.yaml is missing; it names the base model"):
        load_policy(other / "checkpoints" / "step-2")


def test_a_lora_run_that_added_its_thought_token_round_trips(base, tmp_path):
    """The added token's embedding row is trained state too: the checkpoint must carry it, or
    the rebuilt policy would get a freshly sampled row (mean resizing draws one at random)."""
    cfg = export_run(base, tmp_path / "run", "latent", lora=4)
    cfg.neuralese.thought_token, cfg.model.add_thought_token, cfg.rl.steps = "<pause>", True, 1
    trainer = Trainer(cfg)
    trainer.train()
    policy = trainer.policy.eval()
    exported = NeuralesePolicy.from_pretrained(export(tmp_path / "run", tmp_path / "export"))
    assert exported.generate(PROMPTS, max_new_tokens=8) == policy.generate(PROMPTS, max_new_tokens=8)
    tid = exported.thought_token_id
    assert exported.tokenizer.convert_ids_to_tokens(tid) == "<pause>" and tid == policy.thought_token_id
    row = exported.model.get_input_embeddings().weight[tid]
    assert torch.equal(row, policy.model.get_input_embeddings().weight[tid])


def test_a_config_that_does_not_fit_the_checkpoint_is_refused(trained, tmp_path):
    """A run whose config.yaml says LoRA when the checkpoint holds every weight, or the reverse."""
    trainer, _ = trained
    run = shutil.copytree(trainer.cfg.output_dir, tmp_path / "run")
    lora = trainer.cfg.model.lora.r
    text = (run / "config.yaml").read_text()
    assert f"  r: {lora}\n" in text
    (run / "config.yaml").write_text(text.replace(f"  r: {lora}\n", f"  r: {4 - lora}\n", 1))
    expected = (
        "does not hold the LoRA weights" if lora == 0 else "its weights do not fit the model built from"
    )
    with pytest.raises(CheckpointError, match=expected):
        load_policy(run)
