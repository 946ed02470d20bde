"""Fault injection: `neuralese train` is SIGKILLed at random points, resumed with `--resume`
until it finishes, and must end bit for bit where an uninterrupted run ends.

The run is a real `python -m rl.cli train` process on a tiny real model. Kill points, from a
seeded generator:

- `step`: a random delay after the process logs a step, so the kill lands anywhere in the
  loop (rollout, update, logging, saving, deleting an old checkpoint);
- `checkpoint`: the moment a `.step-N.tmp-PID` folder appears, i.e. while `rl.io.atomic_dir`
  is writing a checkpoint; a kill counts as mid-write only if that folder is still there
  after the process is dead.

After every kill each `step-N` folder must pass its manifest check, and the next process
must report that it continues from the newest one. The default suite kills 3 times (one
mid-write); `-m slow` kills 12 times (4 aimed mid-write).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rl.checkpoint import list_checkpoints, verify
from rl.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "plugins" / "rewards.py"
RESUMED = re.compile(r"--resume: (?:continuing from \S*step-(\d+) |no complete checkpoint)")
RECIPE = """\
# neuralese train recipe.yaml --out RUN --resume
seed: 0
model: {{path: "{model}"}}
env: {{name: addition, args: {{digits: 3}}, train_size: 64, test_size: 4}}
rewards:
  - fn: "{plugins}:digit_share"
neuralese: {{mode: latent, num_thoughts: 3, tbptt_window: 2}}
rl:
  steps: {steps}
  prompts_per_step: 2
  samples_per_prompt: 4
  micro_batch_per_device: 8
  learning_rate: 1.0e-3
  lr_scheduler: linear
  max_new_tokens: 5
eval: {{n: 2, max_new_tokens: 5}}
log: {{save_every: 1, keep_checkpoints: 2, completions_every: 1, trackers: []}}
"""


def write_recipe(tmp: Path, model: Path, steps: int) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(RECIPE.format(model=model, plugins=PLUGINS, steps=steps))
    return path


def reference_run(recipe: Path, out: Path) -> None:
    """The uninterrupted run, in this process, single-threaded like the subprocesses."""
    from rl.config import load_config
    from rl.trainer import Trainer

    cfg = load_config(recipe)
    cfg.output_dir = str(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(cfg).train()
    finally:
        torch.set_num_threads(threads)


def launch(recipe: Path, out: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rl.cli", "train", str(recipe), "--out", str(out), "--resume"]
    with open(log, "w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=out.parent)


def poll(proc: subprocess.Popen, ready, timeout: float = 300.0) -> bool:
    """Spin until `ready()` (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.0005)
    raise TimeoutError("the training process made no progress")


def newest_step(out: Path) -> int:
    ckpts = list_checkpoints(out)
    return int(ckpts[-1].name.split("-")[1]) if ckpts else 0


def writing_checkpoint(ckpts: Path, seen: set[str]) -> bool:
    """A `.step-N.tmp-PID` folder not in `seen` exists: a checkpoint is being written."""
    return ckpts.exists() and any(
        e.name.startswith(".step-") and ".tmp-" in e.name and e.name not in seen for e in os.scandir(ckpts)
    )


def kill(proc: subprocess.Popen, kind: str, out: Path, log: Path, rng: random.Random) -> bool:
    """SIGKILL `proc` at a `kind` point; False if it finished first."""
    metrics, ckpts = out / "metrics.jsonl", out / "checkpoints"
    if kind == "step":
        if not poll(proc, lambda: "--resume:" in log.read_text()):  # its log is cut back by then
            return False
        size = metrics.stat().st_size if metrics.exists() else 0
        if not poll(proc, lambda: metrics.exists() and metrics.stat().st_size > size):
            return False
        time.sleep(rng.uniform(0.0, 0.4))
    else:
        for _ in range(rng.randint(0, 2) + 1):  # which of the next checkpoint writes is hit
            seen = {p.name for p in ckpts.glob(".step-*.tmp-*")} if ckpts.exists() else set()
            if not poll(proc, functools.partial(writing_checkpoint, ckpts, seen)):
                return False
    proc.send_signal(signal.SIGKILL)
    return proc.wait() == -signal.SIGKILL


def kill_and_resume(recipe: Path, out: Path, kinds: list[str], seed: int) -> list[dict]:
    """Run to the end through the kills in `kinds`; returns a record of every process."""
    rng = random.Random(seed)
    records: list[dict] = []
    expected = 0
    for i in range(len(kinds) + 1):
        log = out.parent / f"attempt-{i}.log"
        proc = launch(recipe, out, log)
        kind = kinds[i] if i < len(kinds) else None
        killed = kill(proc, kind, out, log, rng) if kind else False
        if not killed:
            assert proc.wait(timeout=600) == 0, log.read_text()
        resumed = RESUMED.search(log.read_text())
        assert resumed, f"process {i} did not say where it resumed:\n{log.read_text()}"
        assert int(resumed.group(1) or 0) == expected, "did not resume from the newest complete checkpoint"
        mid_write = killed and any((out / "checkpoints").glob(f".step-*.tmp-{proc.pid}"))
        for ckpt in list_checkpoints(out):  # no kill leaves a step-N that fails its manifest
            verify(ckpt)
        expected = newest_step(out)
        records.append({"kind": kind if killed else "finished", "resumed_from": int(resumed.group(1) or 0),
                        "mid_write": mid_write, "newest_after": expected})  # fmt: skip
        if not killed:
            break
    return records


def assert_same_run(a: Path, b: Path) -> None:
    """Final weights, optimizer and random states bit for bit; metrics equal but for timings."""
    ca, cb = list_checkpoints(a)[-1], list_checkpoints(b)[-1]
    assert ca.name == cb.name
    for name in ("model.safetensors", "feedback.safetensors"):
        ta, tb = load_file(ca / name), load_file(cb / name)
        assert ta.keys() == tb.keys()
        for key in ta:
            assert torch.equal(ta[key], tb[key]), f"{name}: {key} differs"
    for name in ("optimizer.pt", "rng.pt"):
        sa, sb = (torch.load(c / name, weights_only=True) for c in (ca, cb))
        assert_nested_equal(sa, sb, name)

    def rows(run: Path):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(ln).items() if not k.startswith("time/")} for ln in lines]

    assert rows(a) == rows(b)
    assert (a / "completions.jsonl").read_text() == (b / "completions.jsonl").read_text()


def assert_nested_equal(x, y, where: str) -> None:
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y), where
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            assert_nested_equal(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            assert_nested_equal(u, v, f"{where}[{i}]")
    else:
        assert x == y, where


def run_fault_injection(
    tiny_dir: Path, tmp_path: Path, kinds: list[str], steps: int, seed: int
) -> list[dict]:
    recipe = write_recipe(tmp_path, tiny_dir, steps)
    reference_run(recipe, tmp_path / "whole")
    records = kill_and_resume(recipe, tmp_path / "killed", kinds, seed)
    print("\n".join(map(str, records)))
    assert records[-1]["kind"] == "finished"
    assert_same_run(tmp_path / "whole", tmp_path / "killed")
    leftovers = [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers, f"a save did not clear what killed writers left: {leftovers}"
    return records


def test_sigkill_at_random_points_then_resume_ends_bit_for_bit(tiny_dir, tmp_path):
    records = run_fault_injection(tiny_dir, tmp_path, ["checkpoint", "step", "step"], steps=12, seed=0)
    assert sum(r["kind"] != "finished" for r in records) == 3
    assert any(r["mid_write"] for r in records), "no kill landed while a checkpoint was being written"


@pytest.mark.slow
def test_sigkill_twelve_times_then_resume_ends_bit_for_bit(tiny_dir, tmp_path):
    kinds = ["checkpoint"] * 4 + ["step"] * 8
    random.Random(1).shuffle(kinds)
    records = run_fault_injection(tiny_dir, tmp_path, kinds, steps=40, seed=1)
    assert sum(r["kind"] != "finished" for r in records) == 12
    assert sum(r["mid_write"] for r in records) >= 3


# ----------------------------------------------------------------------------- in-process checks


@pytest.fixture(scope="module")
def two_steps(tiny_dir, tmp_path_factory):
    """A finished 2-step run with a checkpoint after each step, and its config."""
    from rl.trainer import Trainer
    from runs import run_config

    out = tmp_path_factory.mktemp("faults") / "run"
    cfg = run_config(tiny_dir, out, "latent", steps=2)
    cfg.log.save_every = 1
    Trainer(cfg).train()
    return out, cfg


def copy_run(two_steps, dest: Path):
    import copy
    import shutil

    run, cfg = two_steps
    cfg = copy.deepcopy(cfg)
    cfg.output_dir = str(shutil.copytree(run, dest))
    return dest, cfg


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "model.safetensors": (flip_byte, "model.safetensors does not match its checksum"),
    "feedback.safetensors": (flip_byte, "feedback.safetensors does not match its checksum"),
    "optimizer.pt": (lambda p: p.write_bytes(p.read_bytes()[:-10]), "optimizer.pt does not match its checksum"),
    "rng.pt": (lambda p: p.unlink(), "rng.pt is missing"),
    "trainer_state.json": (lambda p: p.write_text(p.read_text().replace('"step": 2', '"step": 7')),
                           "trainer_state.json does not match its checksum"),
    "manifest.json": (lambda p: p.write_text("{not json"), "unreadable manifest.json"),
}  # fmt: skip


def test_each_kind_of_corruption_is_detected_and_names_the_file(two_steps, tmp_path):
    for name, (damage, message) in DAMAGE.items():
        run, _ = copy_run(two_steps, tmp_path / name)
        ckpt = run / "checkpoints" / "step-2"
        verify(ckpt)
        damage(ckpt / name)
        with pytest.raises(CheckpointError) as e:
            verify(ckpt)
        assert f"{ckpt}: {message}" in str(e.value), str(e.value)
        assert "Move step-2 out of" in str(e.value) and "to resume from step-1, the newest before it" in str(
            e.value
        )


def test_resume_stops_at_a_corrupted_checkpoint_and_its_advice_works(two_steps, tmp_path):
    """Resume refuses a damaged newest checkpoint (never skips it silently); moving it away as the
    message says resumes from the one before and ends where the uninterrupted run ended."""
    from rl.trainer import Trainer

    run, cfg = copy_run(two_steps, tmp_path / "run")
    flip_byte(run / "checkpoints" / "step-2" / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors does not match its checksum"):
        Trainer(cfg, resume=True)
    (run / "checkpoints" / "step-2").rename(tmp_path / "step-2-damaged")
    resumed = Trainer(cfg, resume=True)
    assert resumed.state["step"] == 1
    resumed.train()
    assert_same_run(two_steps[0], run)


def test_incomplete_checkpoints_are_never_picked_and_leftovers_are_cleared(two_steps, tmp_path):
    import shutil

    from rl.trainer import Trainer

    run, cfg = copy_run(two_steps, tmp_path / "run")
    ckpts = run / "checkpoints"
    shutil.copytree(ckpts / "step-2", ckpts / ".step-3.tmp-999")  # a writer killed before its rename
    shutil.copytree(ckpts / "step-2", ckpts / "step-4")  # a folder without its manifest is not complete
    (ckpts / "step-4" / "manifest.json").unlink()
    assert [p.name for p in list_checkpoints(run)] == ["step-1", "step-2"]
    cfg.rl.steps = 3
    trainer = Trainer(cfg, resume=True)
    assert trainer.state["step"] == 2
    trainer.train(stop_after=1)
    assert not (ckpts / ".step-3.tmp-999").exists()  # the next save clears what killed writers left
    assert [p.name for p in list_checkpoints(run)] == ["step-2", "step-3"]


def test_resume_cuts_a_half_written_log_line_and_the_final_evaluation_row(tmp_path):
    from rl.runlog import RunLog

    log = RunLog(tmp_path)
    for step in (1, 2, 3):
        log.metrics(step, {"loss": step})
    log.metrics(3, {"eval/accuracy": 0.5})  # the final evaluation shares the last step
    with open(log.metrics_path, "a") as f:
        f.write('{"step": 4, "lo')  # killed mid-write
    log.truncate(3)
    assert [r.get("loss") for r in log.read_metrics()] == [1, 2, 3]
    log.truncate(1)
    assert [r["step"] for r in log.read_metrics()] == [1]
