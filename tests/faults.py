"""Fault injection shared by tests/test_faults.py (one process) and tests/test_scaleout.py (data
parallel and DeepSpeed): a real `neuralese train` is SIGKILLed at random points, resumed with
`--resume` until it finishes, and must end bit for bit where an uninterrupted run ends.

Kill points, from a seeded generator:

- `step`: a random delay after the run logs a step, so the kill lands anywhere in the loop
  (rollout, update, logging, saving, deleting an old checkpoint);
- `checkpoint`: the moment a `.step-N.tmp-PID` folder appears, i.e. while a checkpoint is being
  written (under DeepSpeed that includes the engine's own staging folder); a kill counts as
  mid-write only if such a folder is still there after the run is dead.

A run is killed as a whole, as a preempted job is: the launcher and every process under it
(torchrun starts its workers in sessions of their own, so a process group would miss them).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from neuralese.checkpoint import list_checkpoints, verify

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "plugins" / "rewards.py"
RESUMED = re.compile(r"--resume: (?:continuing from \S*step-(\d+) |no complete checkpoint)")
ONE_PROCESS = [sys.executable, "-m", "neuralese.cli"]
Prefix = list[str] | Callable[[], list[str]]
CHILD_ENV = {
    "PYTHONPATH": str(ROOT),
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


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


def free_port() -> int:
    """A port no one listens on, so parallel test runs on one machine do not meet."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(
    config: Path, port: int, processes: int, machine: int | None = None, machines: int = 1
) -> list[str]:
    """The `accelerate launch` line of `config` up to the program: `processes` in all; with
    `machines` > 1, the launcher of machine `machine` (`--machine_rank`), all on 127.0.0.1."""
    line = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--num_processes",
        str(processes),
        "--main_process_port",
        str(port),
    ]
    if machines > 1:
        line += [
            "--num_machines",
            str(machines),
            "--machine_rank",
            str(machine),
            "--main_process_ip",
            "127.0.0.1",
        ]
    return line


def write_recipe(tmp: Path, model: Path, steps: int) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(RECIPE.format(model=model, plugins=PLUGINS, steps=steps))
    return path


def launch(recipe: Path, out: Path, log: Path, prefix: Prefix = ONE_PROCESS) -> subprocess.Popen:
    """`PREFIX train RECIPE --out OUT --resume`, stderr and stdout to `log`.
    `prefix` is a command line, or a function that makes one for each launch (a fresh port)."""
    prefix = prefix() if callable(prefix) else prefix
    cmd = [*prefix, "train", str(recipe), "--out", str(out), "--resume"]
    with open(log, "w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=err, stderr=err, env={**os.environ, **CHILD_ENV}, cwd=out.parent)


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


def partial_writes(ckpts: Path) -> set[str]:
    """The `.step-N.tmp-*` folders of checkpoint writes under way (or killed)."""
    return (
        {e.name for e in os.scandir(ckpts) if e.name.startswith(".step-") and ".tmp-" in e.name}
        if ckpts.exists()
        else set()
    )


def writing_checkpoint(ckpts: Path, seen: set[str]) -> bool:
    """A `.step-N.tmp-*` folder not in `seen` exists: a checkpoint is being written."""
    return bool(partial_writes(ckpts) - seen)


def kill(proc: subprocess.Popen, kind: str, out: Path, log: Path, rng: random.Random) -> bool:
    """SIGKILL the run `proc` leads at a `kind` point; False if it finished first."""
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
            if not poll(proc, functools.partial(writing_checkpoint, ckpts, partial_writes(ckpts))):
                return False
    return kill_tree(proc)


def kill_tree(proc: subprocess.Popen) -> bool:
    """SIGKILL `proc` and every process under it; True once all are dead and `proc` died of it."""
    pids = [proc.pid, *descendants(proc.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    status = proc.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids[1:]):
        assert time.monotonic() < deadline, f"processes {pids[1:]} outlived SIGKILL"
        time.sleep(0.01)
    return status == -signal.SIGKILL


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), read from /proc."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parent[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parent.items() if pp in frontier]
        found += children
        frontier = children
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def kill_and_resume(
    recipe: Path, out: Path, kinds: list[str], seed: int, prefix: Prefix = ONE_PROCESS
) -> list[dict]:
    """Run to the end through the kills in `kinds`; returns a record of every process."""
    rng = random.Random(seed)
    records: list[dict] = []
    expected = 0
    for i in range(len(kinds) + 1):
        log = out.parent / f"attempt-{i}.log"
        before = partial_writes(out / "checkpoints")
        proc = launch(recipe, out, log, prefix)
        kind = kinds[i] if i < len(kinds) else None
        killed = kill(proc, kind, out, log, rng) if kind else False
        if not killed:
            assert proc.wait(timeout=600) == 0, log.read_text()[-6000:]
        resumed = RESUMED.search(log.read_text())
        assert resumed, f"process {i} did not say where it resumed:\n{log.read_text()[-6000:]}"
        assert int(resumed.group(1) or 0) == expected, "did not resume from the newest complete checkpoint"
        mid_write = killed and bool(partial_writes(out / "checkpoints") - before)
        for ckpt in list_checkpoints(out):  # no kill leaves a step-N that fails its manifest
            verify(ckpt)
        expected = newest_step(out)
        records.append(
            {
                "kind": kind if killed else "finished",
                "resumed_from": int(resumed.group(1) or 0),
                "mid_write": mid_write,
                "newest_after": expected,
            }
        )
        if not killed:
            break
    return records


def uninterrupted(recipe: Path, out: Path, prefix: Prefix) -> None:
    """The reference run, launched the same way as the killed one."""
    log = out.parent / f"{out.name}.log"
    proc = launch(recipe, out, log, prefix)
    assert proc.wait(timeout=900) == 0, log.read_text()[-6000:]


def assert_same_run(a: Path, b: Path) -> None:
    """Final weights, optimizer and random states bit for bit; metrics equal but for timings.
    Under DeepSpeed the engine's own state files too (ZeRO's fp32 weights and optimizer state)."""
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
    engine_a = sorted(p.relative_to(ca) for p in ca.glob("deepspeed/**/*.pt"))
    assert engine_a == sorted(p.relative_to(cb) for p in cb.glob("deepspeed/**/*.pt"))
    for rel in engine_a:
        sa, sb = (torch.load(c / rel, weights_only=False) for c in (ca, cb))
        assert_nested_equal(sa, sb, str(rel))

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
    elif hasattr(x, "__dict__") and type(x).__eq__ is object.__eq__:  # e.g. DeepSpeed's loss scaler
        assert type(x) is type(y), where
        assert_nested_equal(vars(x), vars(y), f"{where}.{type(x).__name__}")
    else:
        assert x == y, where
