"""Reading the real task files that environments load, with errors that name the file.

The project keeps real data (ProsQA, GSM8K) beside itself in `../shared/data/`
relative to the repository root; every loader also takes a `path` argument so a user
can point it anywhere. A missing or malformed file is an `EnvError` naming the file,
the environment argument that chose it and, for a bad row, the line.

Evaluation splits are read in file order (the first `n` rows), so numbers from
different runs and seeds cover the same problems; a training split read from a file is
shuffled with the seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from neuralese import io
from neuralese.errors import EnvError
from neuralese.io import read_text

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def data_path(path: str | Path | None, default: str, env: str, arg: str = "path") -> Path:
    """`path` if given, else `SHARED_DATA / default`; an EnvError if the file is not there."""
    if path is not None and not isinstance(path, (str, Path)):
        raise EnvError(
            f"env {env!r}: env.args.{arg} must be a file path (text), got {path!r} ({type(path).__name__})"
        )
    chosen = Path(path).expanduser() if path is not None else SHARED_DATA / default
    if chosen.is_dir():
        raise EnvError(
            f"env {env!r}: data file {str(chosen)!r} (env.args.{arg}) is a folder; expected a file"
        )
    if not chosen.is_file():
        how = (
            f"env.args.{arg}={str(path)!r}"
            if path is not None
            else f"the default location (no env.args.{arg} given)"
        )
        raise EnvError(
            f"env {env!r}: data file {str(chosen)!r} does not exist; it was taken from {how}. "
            f"Give env.args.{arg} as the path of the file."
        )
    return chosen


def read_json_list(path: Path, env: str) -> list[dict[str, Any]]:
    """A JSON file holding a list of objects."""
    try:
        rows = json.loads(read_text(path, f"data file of env {env!r}", EnvError))
    except json.JSONDecodeError as e:
        raise EnvError(f"env {env!r}: {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise EnvError(f"env {env!r}: {str(path)!r} must hold a JSON list of objects")
    return rows


def read_jsonl(path: Path, env: str) -> list[dict[str, Any]]:
    """A JSON-lines file: one object per non-empty line."""
    rows = io.read_jsonl(path, f"data file of env {env!r}", EnvError, where=f"env {env!r}: {str(path)!r}")
    return [row for _, row in rows]


def require_keys(row: dict[str, Any], keys: tuple[str, ...], path: Path, index: int, env: str) -> None:
    """An EnvError naming the file and row when `row` lacks one of `keys`."""
    missing = [k for k in keys if k not in row]
    if missing:
        raise EnvError(
            f"env {env!r}: {str(path)!r} row {index} has keys {sorted(row)}, missing {missing}; "
            f"every row needs {list(keys)}"
        )


def require_text(row: dict[str, Any], keys: tuple[str, ...], path: Path, index: int, env: str) -> None:
    """An EnvError naming the file, row and key when one of `keys` does not hold text."""
    for key in keys:
        if not isinstance(row[key], str):
            raise EnvError(
                f"env {env!r}: {str(path)!r} row {index}, key {key!r}: expected text, "
                f"got {row[key]!r} ({type(row[key]).__name__})"
            )


def take(rows: list[Any], n: int, seed: int, shuffle: bool) -> list[Any]:
    """The first `n` rows, after a seeded shuffle when `shuffle` (all rows when n exceeds them)."""
    if shuffle:
        rows = list(rows)
        random.Random(seed).shuffle(rows)
    return rows[:n]


def stable_fraction(text: str) -> float:
    """A fixed number in [0, 1) for `text`, the same on every machine and Python run.

    Generated environments use it to split problems into disjoint train and test sets.
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
