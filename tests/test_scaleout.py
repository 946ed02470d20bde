"""Scale-out under faults: runs over several processes (data parallel) and under DeepSpeed ZeRO,
killed at random points and resumed, end bit for bit where an uninterrupted run ends; a rank
that dies stops the whole run promptly, naming the rank, and the run resumes from there.

Each run is a real `accelerate launch -m neuralese.cli train` with the shipped configs
(recipes/accelerate/), started in a session of its own and killed as a whole, as a preempted job
is (tests/faults.py). The uninterrupted reference is launched the same way: sampling depends on
the number of processes, so a 2-process run is compared with a 2-process run.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faults import (
    ROOT,
    accelerate_launch,
    assert_same_run,
    descendants,
    free_port,
    kill_and_resume,
    launch,
    newest_step,
    poll,
    uninterrupted,
    write_recipe,
)

from neuralese.checkpoint import list_checkpoints, verify
from neuralese.errors import CheckpointError

CONFIGS = ROOT / "recipes" / "accelerate"


def accelerate(config: str, processes: int):
    """A launch prefix for `faults.launch`: accelerate with a shipped config, a fresh port each time."""
    return lambda: [*accelerate_launch(CONFIGS / config, free_port(), processes), "-m", "neuralese.cli"]


def killed_and_resumed(model: Path, tmp_path: Path, prefix, steps: int, seed: int) -> list[dict]:
    """>= 4 kills, half of them aimed mid-write; the run ends bit for bit as an uninterrupted one."""
    recipe = write_recipe(tmp_path, model, steps)
    uninterrupted(recipe, tmp_path / "whole", prefix)
    kinds = ["checkpoint", "checkpoint", "step", "step"]
    random.Random(seed).shuffle(kinds)
    records = kill_and_resume(recipe, tmp_path / "killed", kinds, seed, prefix)
    print("\n".join(map(str, records)))
    assert [r["kind"] for r in records[:-1]] == kinds and records[-1]["kind"] == "finished", records
    assert any(r["mid_write"] for r in records), "no kill landed while a checkpoint was being written"
    assert_same_run(tmp_path / "whole", tmp_path / "killed")
    leftovers = [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers, f"a save did not clear what killed writers left: {leftovers}"
    return records


@pytest.mark.slow
def test_two_data_parallel_processes_killed_four_times_resume_bit_for_bit(tiny_dir, tmp_path):
    killed_and_resumed(tiny_dir, tmp_path, accelerate("ddp_cpu.yaml", 2), steps=10, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_killed_four_times_resumes_bit_for_bit(zero3_model_dir, tmp_path, stage):
    pytest.importorskip("deepspeed")
    killed_and_resumed(zero3_model_dir, tmp_path, accelerate(f"zero{stage}.yaml", 1), steps=8, seed=stage)
    ckpt = list_checkpoints(tmp_path / "killed")[-1]
    assert (ckpt / "deepspeed" / "engine").is_dir() and "deepspeed/engine/" in (
        ckpt / "manifest.json"
    ).read_text()
    # A checkpoint resumed without DeepSpeed, or under another stage, is refused with what to use.
    from neuralese.config import load_config
    from neuralese.trainer import Trainer

    cfg = load_config(tmp_path / "recipe.yaml")
    cfg.output_dir, cfg.rl.steps = str(tmp_path / "killed"), 10
    with pytest.raises(CheckpointError, match=f"written under DeepSpeed ZeRO-{stage}.*accelerate config"):
        Trainer(cfg, resume=True)
    other = 5 - stage
    log = tmp_path / "other-stage.log"
    proc = launch(tmp_path / "recipe.yaml", tmp_path / "killed", log, accelerate(f"zero{other}.yaml", 1))
    assert proc.wait(timeout=600) != 0
    assert f"written under DeepSpeed ZeRO-{stage}, resumed under ZeRO-{other}" in log.read_text(), (
        log.read_text()[-3000:]
    )


def rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of the worker with RANK=`rank` under `launcher` (read from /proc), None if not yet started."""
    for pid in descendants(launcher.pid):
        with contextlib.suppress(OSError):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in environ:  # the entry itself: LOCAL_RANK=... is another
                return pid
    return None


def kill_rank_when(proc: subprocess.Popen, rank: int, ready) -> float:
    """Once `ready()`, SIGKILL the worker of `rank`; returns the monotonic time of the kill."""
    assert poll(proc, ready), "the run ended before the kill"
    pid = rank_pid(proc, rank)
    assert pid is not None, f"no worker with RANK={rank} under the launcher"
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def test_a_killed_rank_stops_the_run_promptly_naming_it_and_resume_completes_it(tiny_dir, tmp_path):
    recipe = write_recipe(tmp_path, tiny_dir, steps=10)
    prefix = accelerate("ddp_cpu.yaml", 2)
    uninterrupted(recipe, tmp_path / "whole", prefix)
    out, log = tmp_path / "killed", tmp_path / "killed.log"
    proc = launch(recipe, out, log, prefix)
    killed_at = kill_rank_when(proc, 1, lambda: newest_step(out) >= 3)
    status = proc.wait(timeout=120)
    took = time.monotonic() - killed_at
    print(f"the run stopped {took:.1f} s after its rank 1 was killed")
    text = log.read_text()
    assert status != 0, text[-3000:]
    assert took < 30, f"the run took {took:.1f} s to stop after its rank 1 was killed"
    assert "rank      : 1 (local_rank: 1)" in text and "exitcode  : -9" in text, text[-3000:]
    for ckpt in list_checkpoints(out):  # what the dead rank left is usable
        verify(ckpt)
    resumed = launch(recipe, out, tmp_path / "resumed.log", prefix)
    assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()[-6000:]
    assert "--resume: continuing from" in (tmp_path / "resumed.log").read_text()
    assert_same_run(tmp_path / "whole", out)


def two_machines(recipe: Path, out: Path, logs: str) -> list[subprocess.Popen]:
    """`recipes/accelerate/multinode.yaml` as two machines of one process each on 127.0.0.1."""
    port = free_port()
    return [
        launch(
            recipe,
            out,
            out.parent / f"{logs}-{m}.log",
            [*accelerate_launch(CONFIGS / "multinode.yaml", port, 2, m, machines=2), "-m", "neuralese.cli"],
        )
        for m in (0, 1)
    ]


def finish(procs: list[subprocess.Popen], out: Path, logs: str) -> None:
    for m, proc in enumerate(procs):
        assert proc.wait(timeout=600) == 0, (out.parent / f"{logs}-{m}.log").read_text()[-6000:]


@pytest.mark.slow
def test_a_rank_killed_on_another_machine_stops_the_first_promptly_and_resume_completes_it(
    tiny_dir, tmp_path
):
    """Machine 0's launcher cannot see machine 1's processes: its worker learns of the death at its
    next collective and stops with an error naming itself and where to resume from."""
    recipe = write_recipe(tmp_path, tiny_dir, steps=10)
    finish(two_machines(recipe, tmp_path / "whole", "whole"), tmp_path / "whole", "whole")
    out = tmp_path / "killed"
    procs = two_machines(recipe, out, "killed")
    killed_at = kill_rank_when(procs[1], 1, lambda: newest_step(out) >= 3)
    statuses = [p.wait(timeout=120) for p in procs]
    took = time.monotonic() - killed_at
    print(f"both machines stopped {took:.1f} s after rank 1 was killed")
    first = (tmp_path / "killed-0.log").read_text()
    assert all(s != 0 for s in statuses) and took < 30, (statuses, took, first[-3000:])
    assert "process 0 of 2 lost the others in a collective" in first and "--resume" in first, first[-3000:]
    finish(two_machines(recipe, out, "resumed"), out, "resumed")
    assert "--resume: continuing from" in (tmp_path / "resumed-0.log").read_text()
    assert_same_run(tmp_path / "whole", out)
