"""`python -m neuralese.cli.peak_rss PEAK_FILE ARGS...`: the `neuralese ARGS...` command, and its own peak
RSS in MiB written to PEAK_FILE as it exits (JSON; null where /proc is missing). `neuralese ablate` runs
each stage 0 and each arm this way (neuralese.ablate.processes).

Not wait4's ru_maxrss: Linux carries the RSS high-water mark of the image before exec (the parent's,
torch and all) into the child's. VmHWM is the new address space's own.
"""

from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path

from neuralese.cli import main


def peak_rss_mib() -> float | None:
    """This process's peak resident set (VmHWM) in MiB; None off Linux."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.is_file() else []
    kib = [int(ln.split()[1]) for ln in lines if ln.startswith("VmHWM:")]
    return kib[0] / 1024 if kib else None


def measured(argv: list[str]) -> int:
    """Run `neuralese argv[1:]`, writing its peak RSS to argv[0] at exit (whatever the exit)."""
    peak_file = Path(argv[0])
    atexit.register(lambda: peak_file.write_text(json.dumps(peak_rss_mib())))
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(measured(sys.argv[1:]))
