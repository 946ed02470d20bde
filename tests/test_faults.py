"""Fault injection on one process: `neuralese train` is SIGKILLed at random points, resumed with
`--resume` until it finishes, and must end bit for bit where an uninterrupted run ends (the kill
points and checks are in tests/faults.py; tests/test_scaleout.py does the same under data
parallel and DeepSpeed). After every kill each `step-N` folder must pass its manifest check, and
the next process must report that it continues from the newest one. The default suite kills 3
times (one mid-write); `-m slow` kills 12 times (4 aimed mid-write).

Then in-process checks: each kind of corruption is named, incomplete folders are never picked.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from faults import assert_same_run, kill_and_resume, write_recipe

from neuralese.checkpoint import list_checkpoints, verify
from neuralese.errors import CheckpointError


def reference_run(recipe: Path, out: Path) -> None:
    """The uninterrupted run, in this process, single-threaded like the subprocesses."""
    from neuralese.config import load_config
    from neuralese.trainer import Trainer

    cfg = load_config(recipe)
    cfg.output_dir = str(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(cfg).train()
    finally:
        torch.set_num_threads(threads)


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
    from runs import run_config

    from neuralese.trainer import Trainer

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
    "optimizer.pt": (
        lambda p: p.write_bytes(p.read_bytes()[:-10]),
        "optimizer.pt does not match its checksum",
    ),
    "rng.pt": (lambda p: p.unlink(), "rng.pt is missing"),
    "trainer_state.json": (
        lambda p: p.write_text(p.read_text().replace('"step": 2', '"step": 7')),
        "trainer_state.json does not match its checksum",
    ),
    "manifest.json": (lambda p: p.write_text("{not json"), "unreadable manifest.json"),
}


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


def test_resume_with_another_number_of_processes_is_refused(two_steps, tmp_path):
    """Each process's random streams are in the checkpoint: resuming with another count would go on
    with other samples than the run that wrote it, so it is refused with the count to use."""
    from neuralese.checkpoint import load_checkpoint
    from neuralese.trainer import Trainer

    run, cfg = copy_run(two_steps, tmp_path / "run")
    trainer = Trainer(cfg, resume=True)
    ckpt = list_checkpoints(run)[-1]
    with pytest.raises(
        CheckpointError, match=r"written by a run of 1 process\(es\), resumed with 2.*--num_processes 1"
    ):
        load_checkpoint(
            ckpt, trainer.policy, trainer.optimizer, trainer.scheduler, trainer.generator, rank=1, world=2
        )


def test_resume_stops_at_a_corrupted_checkpoint_and_its_advice_works(two_steps, tmp_path):
    """Resume refuses a damaged newest checkpoint (never skips it silently); moving it away as the
    message says resumes from the one before and ends where the uninterrupted run ended."""
    from neuralese.trainer import Trainer

    run, cfg = copy_run(two_steps, tmp_path / "run")
    flip_byte(run / "checkpoints" / "step-2" / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors does not match its checksum"):
        Trainer(cfg, resume=True)
    (run / "checkpoints" / "step-2").rename(tmp_path / "step-2-damaged")
    resumed = Trainer(cfg, resume=True)
    assert resumed.state.step == 1
    resumed.train()
    assert_same_run(two_steps[0], run)


def test_incomplete_checkpoints_are_never_picked_and_leftovers_are_cleared(two_steps, tmp_path):
    import shutil

    from neuralese.trainer import Trainer

    run, cfg = copy_run(two_steps, tmp_path / "run")
    ckpts = run / "checkpoints"
    shutil.copytree(ckpts / "step-2", ckpts / ".step-3.tmp-999")  # a writer killed before its rename
    shutil.copytree(ckpts / "step-2", ckpts / "step-4")  # a folder without its manifest is not complete
    (ckpts / "step-4" / "manifest.json").unlink()
    assert [p.name for p in list_checkpoints(run)] == ["step-1", "step-2"]
    cfg.rl.steps = 3
    trainer = Trainer(cfg, resume=True)
    assert trainer.state.step == 2
    trainer.train(stop_after=1)
    assert not (ckpts / ".step-3.tmp-999").exists()  # the next save clears what killed writers left
    assert [p.name for p in list_checkpoints(run)] == ["step-2", "step-3"]


def test_resume_cuts_a_half_written_log_line_and_the_final_evaluation_row(tmp_path):
    from neuralese.runlog import RunLog

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


def test_only_the_process_that_writes_the_log_cuts_it_on_resume(tmp_path):
    """Under DDP every rank resumes at once; two ranks rewriting one file race on its temporary."""
    from neuralese.runlog import RunLog

    writer = RunLog(tmp_path)
    for step in (1, 2, 3):
        writer.metrics(step, {"loss": step})
    RunLog(tmp_path, enabled=False).truncate(1)  # another rank: leaves the file alone
    assert [r["step"] for r in writer.read_metrics()] == [1, 2, 3]
    assert not list(tmp_path.glob(".*.tmp"))
    writer.truncate(1)
    assert [r["step"] for r in writer.read_metrics()] == [1]
