"""The bad-input corpus: every case in `tests/bad_inputs/` goes through the real CLI and must end
with exit status 2, exactly one error paragraph on stderr that contains the case's expected
message and no traceback (beside the console's banner, warnings and evaluation lines), and an output folder whose existing files are unchanged byte for byte.

A case file is a recipe overlay (merged into `base.yaml`) with a header of `# key: value` lines:

    # expect: the message fragment stderr must contain (placeholders allowed)
    # args:   the command line (default: train @RECIPE@ --out @OUT@)
    # out:    what the output folder holds before: `results` (user files, the default), `run`
    #         (a finished run), `corrupted` (a finished run with a byte flipped in a checkpoint),
    #         `bad_config` (a finished run whose config.yaml is not YAML) or `damaged` (a finished
    #         run whose checkpoint's weights and optimizer state are cut short, its manifest agreeing)
    # raw     the body is the whole recipe, not an overlay (for malformed YAML)
    # encoding: the recipe file's encoding (default utf-8; latin-1 makes a file that is not UTF-8)

Placeholders: @MODEL@ (a tiny real model), @MODELS@ (broken model and exported folders, and
data files), @PLUGINS@, @MISSING@ (a folder that does not exist), @RECIPE@, @OUT@.

Nothing may change: the sha256 of every file in the case's folder (recipe and output folder) and
in @MODELS@ is the same before and after, and no run files appear.

The default suite calls `neuralese.cli.main` in this process (file-descriptor-level capture, so
library output counts too); `-m slow` runs every case as a separate `python -m neuralese.cli`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neuralese.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(p for p in CORPUS.glob("*.yaml") if p.name != "base.yaml")
DEFAULT_ARGS = "train @RECIPE@ --out @OUT@"
PROGRESS_BAR = re.compile(r"^[\w ]+( \[\w+\])?:\s+\d+%\|")  # tqdm's redrawn bar lines are not messages
# Nor are the console's own lines: the banner a command prints while its model loads (a title, then
# indented rows), its warnings, and the evaluation lines a run prints above its bar.
CONSOLE = re.compile(r"^(  \S|step \d+ \| eval |neuralese [\w-]+: (loading the model$|warning: ))")


def parse_case(path: Path) -> dict:
    header, body = {}, []
    for line in path.read_text().splitlines():
        m = re.match(r"^# (\w+)(?:: (.*))?$", line)
        if m and not body:
            header[m.group(1)] = m.group(2) if m.group(2) is not None else True
        else:
            body.append(line)
    assert "expect" in header, f"{path.name}: no '# expect:' line"
    return {**header, "body": "\n".join(body) + "\n"}


def merge(base: dict, overlay: dict) -> dict:
    """The overlay's sections merged key by key into the base's; values inside a section replace."""
    out = dict(base)
    for key, value in overlay.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = {**out[key], **value} if both else value
    return out


def substitute(text: str, places: dict[str, Path]) -> str:
    for name, path in places.items():
        text = text.replace(f"@{name}@", str(path))
    return text


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def prepare(case: dict, tmp: Path, places: dict[str, Path], runs: dict[str, Path]) -> tuple[list[str], Path]:
    """Write the recipe and the output folder; return the argv and the output folder."""
    out = tmp / "out"
    kind = case.get("out", "results")
    if kind == "results":  # somebody's results, which no failure may touch
        (out / "results").mkdir(parents=True)
        (out / "notes.txt").write_text("my notes\n")
        (out / "results" / "eval.json").write_text('{"accuracy": 0.5}\n')
    else:
        shutil.copytree(runs[kind], out)
    places = {**places, "RECIPE": tmp / "recipe.yaml", "OUT": out}
    body = substitute(case["body"], places)
    if case.get("raw"):
        text = body
    else:
        base = yaml.safe_load(substitute((CORPUS / "base.yaml").read_text(), places))
        text = yaml.safe_dump(merge(base, yaml.safe_load(body) or {}), sort_keys=False)
    (tmp / "recipe.yaml").write_bytes(text.encode(case.get("encoding", "utf-8")))
    return shlex.split(substitute(case.get("args", DEFAULT_ARGS), places)), out


def check(case: dict, argv: list[str], rc: int, stderr: str, places: dict[str, Path]) -> None:
    assert "Traceback" not in stderr, stderr
    assert rc == 2, f"exit status {rc}; stderr:\n{stderr}"
    lines = [
        ln
        for ln in stderr.splitlines()
        if ln.strip() and not PROGRESS_BAR.match(ln) and not CONSOLE.match(ln)
    ]
    assert len(lines) == 1, "expected exactly one message on stderr, got:\n" + "\n".join(lines)
    assert lines[0].startswith(f"neuralese {argv[0]}: error: "), lines[0]
    expected = substitute(case["expect"], places)
    assert expected in lines[0], f"\nexpected: {expected}\nmessage:  {lines[0]}"


def check_folder(before: dict[str, str], folder: Path) -> None:
    """Every file that was there is there, byte for byte; no run log or checkpoint appeared."""
    after = snapshot(folder)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"existing files changed or removed: {changed}"
    new = [Path(n) for n in sorted(set(after) - set(before))]
    assert not [n for n in new if n.name == "metrics.jsonl" or "checkpoints" in n.parts], new


def check_inputs(before: dict[str, str], places: dict[str, Path]) -> None:
    assert snapshot(places["MODELS"]) == before, "a model, exported folder or data file was modified"


def tokenizer_without_thought_token(texts: list[str]):
    """A word-level tokenizer like the tiny one, but with no `<thought>` token at all."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from neuralese.tiny import BOS, EOS, PAD, PIECE_PATTERN, UNK, text_pieces

    pieces = sorted({p for t in texts for p in text_pieces(t)})
    backend = Tokenizer(
        models.WordLevel({tok: i for i, tok in enumerate([PAD, BOS, EOS, UNK, *pieces])}, UNK)
    )
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK
    )


def make_remote_code_folder(tiny_dir: Path, folder: Path, model_type: str = "neuralese_custom") -> Path:
    """The tiny model, but its config.json asks for model code shipped in the folder; importing
    that code leaves a file named EXECUTED next to it."""
    shutil.copytree(tiny_dir, folder)
    (folder / "modeling_custom.py").write_text(
        "from pathlib import Path\n"
        "Path(__file__).with_name('EXECUTED').touch()\n"
        "from transformers import LlamaForCausalLM\n"
        "class CustomForCausalLM(LlamaForCausalLM):\n    pass\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type=model_type, auto_map={"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def broken_models(tiny_dir, tmp_path_factory) -> Path:
    """Model folders that are wrong in one way each, derived from the tiny model, and broken data files."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from neuralese.config import TinyModelConfig
    from neuralese.envs import env_texts, make_env
    from neuralese.tiny import build_tiny_model, save_tiny

    root = tmp_path_factory.mktemp("broken-models")
    (root / "empty").mkdir()
    for name in ("pickle_only", "bad_config", "truncated"):
        shutil.copytree(tiny_dir, root / name)
    weights = root / "pickle_only" / "model.safetensors"
    torch.save(load_file(weights), root / "pickle_only" / "pytorch_model.bin")
    weights.unlink()
    (root / "bad_config" / "config.json").write_text('{"model_type": "llama", ')
    truncated = root / "truncated" / "model.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    make_remote_code_folder(tiny_dir, root / "remote_code")
    texts = env_texts(make_env("addition", {"digits": 3}).dataset("train", 200, seed=0))
    tok = tokenizer_without_thought_token(texts + [" " + t for t in texts])
    save_tiny(
        build_tiny_model(
            tok, TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
        ),
        tok,
        root / "no_thought",
    )
    shape = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    two_logits = build_tiny_model(tok, shape, 0, AutoModelForSequenceClassification, num_labels=2)
    save_tiny(two_logits, tok, root / "two_logits")  # a classifier with two logits: no reward model
    shutil.copytree(tiny_dir, root / "bad_tokenizer")
    tokenizer_file = root / "bad_tokenizer" / "tokenizer.json"
    tokenizer_file.write_bytes(tokenizer_file.read_bytes()[:500])
    make_exported_folders(tiny_dir, root)
    (root / "latin1.jsonl").write_bytes(
        '{"question": "Caf\xe9 1+1?", "answer": "#### 2"}\n'.encode("latin-1")
    )
    good = {"question": "1+1?", "answer": "#### 2"}
    (root / "question_number.jsonl").write_text(
        f"{json.dumps(good)}\n{json.dumps({**good, 'question': 3})}\n"
    )
    problem = {"question": "Is A a b or c?", "answer": "A is a b.", "steps": "A is a b."}  # steps: one text
    (root / "steps_text.json").write_text(json.dumps([problem]))
    return root


def make_exported_folders(tiny_dir: Path, root: Path) -> None:
    """An exported latent policy (`exported`), and copies of it broken one way each."""
    from neuralese.config import NeuraleseConfig
    from neuralese.policy import ADAPTER_FILE, CONFIG_FILE, NeuralesePolicy

    policy = NeuralesePolicy.from_pretrained(tiny_dir, config=NeuraleseConfig(mode="latent", num_thoughts=2))
    policy.save_pretrained(root / "exported")
    for name in ("damaged_feedback", "meta_mismatch", "meta_not_json", "meta_bad_mode"):
        shutil.copytree(root / "exported", root / f"exported_{name}")
    adapter = root / "exported_damaged_feedback" / ADAPTER_FILE
    adapter.write_bytes(adapter.read_bytes()[:200])
    meta = json.loads((root / "exported" / CONFIG_FILE).read_text())
    meta["neuralese"]["projection"] = "mlp"  # the weights beside it are a linear projection's
    (root / "exported_meta_mismatch" / CONFIG_FILE).write_text(json.dumps(meta))
    (root / "exported_meta_not_json" / CONFIG_FILE).write_text('{"neuralese": {"mode": "latent",')
    meta["neuralese"]["mode"] = "lateral"
    (root / "exported_meta_bad_mode" / CONFIG_FILE).write_text(json.dumps(meta))


@pytest.fixture(scope="session")
def places(tiny_dir, broken_models, tmp_path_factory) -> dict[str, Path]:
    return {
        "MODEL": tiny_dir,
        "MODELS": broken_models,
        "PLUGINS": CORPUS / "plugins",
        "MISSING": tmp_path_factory.mktemp("missing") / "not-here",
    }


@pytest.fixture(scope="session")
def runs(places, tmp_path_factory) -> dict[str, Path]:
    """A finished run of the base recipe, and copies of it broken one way each (see `# out:`)."""
    from neuralese.cli import main

    root = tmp_path_factory.mktemp("runs")
    recipe = root / "recipe.yaml"
    recipe.write_text(substitute((CORPUS / "base.yaml").read_text(), places))
    assert main(["train", str(recipe), "--out", str(root / "run")]) == 0
    shutil.copytree(root / "run", root / "corrupted")
    weights = list_checkpoints(root / "corrupted")[-1] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    shutil.copytree(root / "run", root / "bad_config")
    (root / "bad_config" / "config.yaml").write_text("model: {path: [unclosed\n")
    shutil.copytree(root / "run", root / "damaged")  # damaged before its manifest was written
    ckpt = list_checkpoints(root / "damaged")[-1]
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    (ckpt / "optimizer.pt").write_bytes(b"PK\x03\x04 cut short")
    manifest = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(ckpt.iterdir())
        if p.name != "manifest.json"
    }
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    return {name: root / name for name in ("run", "corrupted", "bad_config", "damaged")}


def test_the_corpus_is_large_and_the_base_recipe_is_good(places, runs):
    assert len(CASES) >= 110
    assert (runs["run"] / "checkpoints" / "step-1" / "manifest.json").is_file()  # the base recipe trains


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_bad_input_in_process(path, places, runs, tmp_path, capfd):
    run_in_process(parse_case(path), places, runs, tmp_path, capfd)


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vLLM is installed: its engine starts"
)
def test_vllm_rollouts_without_vllm(places, runs, tmp_path, capfd):
    """A corpus case, but only where vLLM is not installed."""
    expect = "rl.rollout_engine: 'vllm' needs vLLM, which does not import here"
    run_in_process({"expect": expect, "body": "rl:\n  rollout_engine: vllm\n"}, places, runs, tmp_path, capfd)


def run_in_process(case: dict, places, runs, tmp_path: Path, capfd) -> None:
    from neuralese.cli import main

    argv, out = prepare(case, tmp_path, places, runs)
    before, inputs = snapshot(tmp_path), snapshot(places["MODELS"])
    capfd.readouterr()
    rc = main(argv)  # anything but a NeuraleseError propagates: a traceback fails the test
    check(case, argv, rc, capfd.readouterr().err, {**places, "RECIPE": tmp_path / "recipe.yaml", "OUT": out})
    check_folder(before, tmp_path)
    check_inputs(inputs, places)


@pytest.mark.slow
@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_bad_input_subprocess(path, places, runs, tmp_path):
    run_cli_case(path, places, runs, tmp_path)


@pytest.mark.parametrize("name", ["negative_learning_rate"])
def test_bad_input_subprocess_sample(name, places, runs, tmp_path):
    """One case in the default suite through a real `python -m neuralese.cli` process."""
    run_cli_case(CORPUS / f"{name}.yaml", places, runs, tmp_path)


def run_cli_case(path: Path, places, runs, tmp_path: Path) -> None:
    case = parse_case(path)
    argv, out = prepare(case, tmp_path, places, runs)
    before, inputs = snapshot(tmp_path), snapshot(places["MODELS"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "neuralese.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    check(
        case, argv, proc.returncode, proc.stderr, {**places, "RECIPE": tmp_path / "recipe.yaml", "OUT": out}
    )
    check_folder(before, tmp_path)
    check_inputs(inputs, places)
