"""The ablation's child processes: each stage 0 and each arm x seed is its own `neuralese` process, so
its peak RSS is its own and one run's memory never carries into the next.

A child is `python -m neuralese.cli.peak_rss PEAK_FILE ARGS...`: the `neuralese ARGS...` command, which
writes its own peak RSS as it exits. Its output goes to a log file; a child that fails ends the
ablation with the last lines of its log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from neuralese.errors import TrainingError

LOG_TAIL = 15  # lines of a failed child's log shown


def child_env(threads: int) -> dict[str, str]:
    """The environment of every child: its thread count fixed (oversubscription costs 10-50x on a
    busy machine), nothing fetched from the network."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
    )
    return env


def run_child(cli_args: list[str], log: Path, threads: int) -> tuple[float, float | None]:
    """`neuralese CLI_ARGS` in a fresh process, output to `log`; (wall seconds, its peak RSS in MiB)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak_file = log.with_suffix(".peak")
    cmd = [sys.executable, "-m", "neuralese.cli.peak_rss", str(peak_file), *cli_args]
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(threads))
    wall = time.perf_counter() - start
    if code != 0:
        print("".join(log.read_text().splitlines(keepends=True)[-LOG_TAIL:]), end="", file=sys.stderr)
        raise TrainingError(
            f"`neuralese {' '.join(cli_args[:2])}` failed (exit {code}); the last "
            f"{LOG_TAIL} lines of its log {log} are above"
        )
    return wall, json.loads(peak_file.read_text())
