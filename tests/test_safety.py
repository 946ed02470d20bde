"""Safety: checkpoints and saved policies hold safetensors (plus JSON and weights-only `.pt`);
nothing unpickles files from a user's folder; model code from a folder runs only with
`model.trust_remote_code`; plug-ins are imported only from the paths a recipe names.

The source audit walks the syntax tree of every module in the package, so a new
`torch.load(path)` or `trust_remote_code=True` anywhere fails here.
"""

from __future__ import annotations

import ast
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch
from runs import run_config
from test_bad_inputs import make_remote_code_folder

from neuralese.checkpoint import MANIFEST, _sha256, list_checkpoints, load_checkpoint
from neuralese.config import ModelConfig
from neuralese.errors import CheckpointError
from neuralese.io import write_json
from neuralese.models import load_model
from neuralese.plugins import resolve

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = [
    p for d in ("rl", "envs", "rewards", "bench", "experiments") for p in sorted((ROOT / d).rglob("*.py"))
]
PICKLERS = {"pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
SAVED_SUFFIXES = {".safetensors", ".json", ".pt", ".jinja", ".txt"}
PICKLE_SUFFIXES = {".bin", ".pth", ".pkl", ".pickle", ".ckpt"}
# Only these files turn a name into an import: the plug-in resolver and the built-in env table.
IMPORTERS = {"rl/plugins.py", "envs/base.py"}


def _name(node: ast.AST) -> str:
    """`torch.load` for the call target `torch.load`, `load` for `load`."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def audit(source: str, where: str) -> list[str]:
    """Unsafe loading in one module: what was found, and where."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):  # `import pickle` gives `pickle.load`
            problems += [f"{line}: imports {a.name}" for a in node.names if a.name.split(".")[0] in PICKLERS]
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLERS:
            # `from pickle import UnpicklingError` (an exception type) is fine; loaders are not
            problems += [
                f"{line}: imports {a.name}"
                for a in node.names
                if "load" in a.name.lower() or "Unpickler" == a.name
            ]
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        weights_only = _kw(node, "weights_only")
        if name.endswith("torch.load") and not (
            isinstance(weights_only, ast.Constant) and weights_only.value is True
        ):
            problems.append(f"{line}: torch.load without weights_only=True")
        if name.split(".")[-1] in ("load", "loads", "Unpickler") and name.split(".")[0] in PICKLERS:
            problems.append(f"{line}: {name}")
        allow = _kw(node, "allow_pickle")
        if isinstance(allow, ast.Constant) and allow.value is True:
            problems.append(f"{line}: allow_pickle=True")
        trust = _kw(node, "trust_remote_code")
        if isinstance(trust, ast.Constant) and trust.value is True:
            problems.append(f"{line}: trust_remote_code=True")
        if name in ("exec", "eval", "__import__"):
            problems.append(f"{line}: {name}()")
        if name.endswith("ForCausalLM.from_pretrained") or name.endswith("AutoModel.from_pretrained"):
            safe = _kw(node, "use_safetensors")
            if not (isinstance(safe, ast.Constant) and safe.value is True):
                problems.append(f"{line}: {name} without use_safetensors=True")
        if (
            name in ("importlib.import_module", "importlib.util.spec_from_file_location")
            and where not in IMPORTERS
        ):
            problems.append(f"{line}: {name} outside the plug-in resolver")
    return problems


def test_the_audit_catches_each_kind_of_unsafe_load():
    bad = (
        "import pickle\nfrom dill import loads\nimport torch, numpy as np, importlib\n"
        "torch.load(p)\ntorch.load(p, weights_only=False)\npickle.loads(b)\nnp.load(p, allow_pickle=True)\n"
        "AutoModelForCausalLM.from_pretrained(p, trust_remote_code=True)\neval('1')\n"
        "importlib.import_module(name)\n"
    )
    found = audit(bad, "rl/somewhere.py")
    assert len(found) == 10, found
    good = "from pickle import UnpicklingError\ntorch.load(p, weights_only=True)\nself.policy.eval()\n"
    assert audit(good, "rl/x.py") == []


def test_the_package_loads_nothing_unsafely():
    assert len(PACKAGE) > 20
    problems = [p for path in PACKAGE for p in audit(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "\n".join(problems)


def test_trust_remote_code_is_off_by_default():
    assert ModelConfig().trust_remote_code is False


@pytest.fixture(scope="module")
def finished_run(tiny_dir, tmp_path_factory) -> Path:
    """A finished PPO run (so a value head is saved too)."""
    from neuralese.trainer import Trainer

    out = tmp_path_factory.mktemp("safety") / "run"
    Trainer(run_config(tiny_dir, out, "latent", "ppo", steps=1)).train()
    return out


def test_a_checkpoint_holds_only_safetensors_json_and_weights_only_pt(finished_run):
    from safetensors import safe_open

    (ckpt,) = list_checkpoints(finished_run)
    files = sorted(ckpt.iterdir())
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".pt"}, files
    assert {p.name for p in files} >= {"model.safetensors", "feedback.safetensors", "value_head.safetensors"}
    for path in files:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                assert list(f.keys())
        if path.suffix == ".pt":  # tensors, numbers, strings and containers only
            assert torch.load(path, weights_only=True)


def test_a_pickled_object_in_a_checkpoint_is_refused_not_run(finished_run, tiny_dir, tmp_path):
    """Even with a matching manifest, a `.pt` holding an object is an error and its code never runs."""
    from neuralese.trainer import Trainer

    run = shutil.copytree(finished_run, tmp_path / "run")
    ckpt = list_checkpoints(run)[-1]
    marker = tmp_path / "EXECUTED"
    (ckpt / "rng.pt").write_bytes(pickle.dumps(_Payload(marker)))
    manifest = {p.name: _sha256(p) for p in sorted(ckpt.iterdir()) if p.name != MANIFEST}
    write_json(ckpt / MANIFEST, manifest)
    trainer = Trainer(run_config(tiny_dir, tmp_path / "other", "latent", "ppo", steps=1))
    with pytest.raises(CheckpointError, match=r"rng.pt.*refusing to unpickle"):
        load_checkpoint(
            ckpt, trainer.policy, trainer.optimizer, trainer.scheduler, trainer.generator, trainer.value_head
        )
    assert not marker.exists()


class _Payload:
    """Unpickling this (outside weights_only) creates `marker`: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_saved_policy_holds_no_pickles(tiny_dir, tmp_path):
    from neuralese.config import NeuraleseConfig
    from neuralese.policy import NeuralesePolicy

    policy = NeuralesePolicy.from_pretrained(tiny_dir, config=NeuraleseConfig(mode="latent"))
    out = policy.save_pretrained(tmp_path / "saved")
    suffixes = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert suffixes <= SAVED_SUFFIXES and not suffixes & PICKLE_SUFFIXES, suffixes


def test_pickled_weights_beside_safetensors_are_never_read(tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir, tmp_path / "model")
    marker = tmp_path / "EXECUTED"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    load_model(folder)
    assert not marker.exists()


def test_model_code_in_a_folder_does_not_run_without_trust_remote_code(tiny_dir, tmp_path):
    known = make_remote_code_folder(tiny_dir, tmp_path / "known", model_type="llama")
    model, _ = load_model(known)  # a known architecture: transformers' own class, the folder's code unused
    assert type(model).__name__ == "LlamaForCausalLM" and not (known / "EXECUTED").exists()
    unknown = make_remote_code_folder(tiny_dir, tmp_path / "unknown")
    with pytest.raises(CheckpointError, match="runs only with model.trust_remote_code: true"):
        load_model(unknown)
    assert not (unknown / "EXECUTED").exists()


def test_a_plugin_file_is_imported_alone(tmp_path):
    """Resolving `dir/plugin.py:fn` runs that file only: no sibling, and sys.path gains only the file's
    folder, at its end (so the plug-in can import its own modules, and they shadow no installed one)."""
    (tmp_path / "sibling.py").write_text(f"open({str(tmp_path / 'EXECUTED')!r}, 'w').close()\n")
    (tmp_path / "plugin.py").write_text(
        "def score(prompts, completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    path_before = list(sys.path)  # noqa: TID251
    fn = resolve(f"{tmp_path / 'plugin.py'}:score", "reward function", "rewards[0].fn")
    assert fn(prompts=["a"], completions=["b"]) == [1.0]
    after = sys.path  # noqa: TID251
    assert after == [*path_before, str(tmp_path.resolve())] and not (tmp_path / "EXECUTED").exists()
    assert "sibling" not in sys.modules
