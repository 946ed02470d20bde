"""Reading and writing files: every file the CLI reads goes through one checked reader, every
path it writes to is checked before work starts, and folders are never half-written.

Readers (`read_text`, `read_json`, `read_jsonl`, `read_yaml`, `read_safetensors`) raise the caller's
`NeuraleseError` subclass naming the file and what is wrong with it (missing, a folder, not
UTF-8, not JSON or YAML, a damaged safetensors file), never a library's traceback.
Writers build a folder under a temporary name and rename it when complete (`atomic_dir`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from neuralese.errors import CheckpointError, ConfigError, NeuraleseError

Error = type[NeuraleseError]

# ----------------------------------------------------------------------------- reading


def _require_file(path: Path, what: str, error: Error) -> None:
    if not path.exists():
        raise error(f"{path}: {what} not found")
    if path.is_dir():
        raise error(f"{path}: is a folder; expected the {what}")


def read_bytes(path: str | Path, what: str = "file", error: Error = CheckpointError) -> bytes:
    """The bytes of `path`; `what` names it in the message (`recipe file`, `neuralese.json`)."""
    path = Path(path)
    _require_file(path, what, error)
    try:
        return path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read the {what}: {e.strerror or e}") from None


def read_text(path: str | Path, what: str = "file", error: Error = CheckpointError) -> str:
    """The UTF-8 text of `path`."""
    data = read_bytes(path, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); save the {what} as UTF-8"
        ) from None


def read_jsonl(
    path: str | Path, what: str = "file", error: Error = CheckpointError, where: str | None = None
) -> list[tuple[int, dict]]:
    """(line number, object) of every non-empty line of a JSON Lines file; `where` starts the
    message about a bad line (default: the path)."""
    where = where or str(path)
    rows = []
    lines = read_text(path, what, error).split("\n")  # not splitlines: U+2028 may sit in a string
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{where} line {lineno} is not valid JSON: {e}") from None
        if not isinstance(row, dict):
            raise error(f"{where} line {lineno} is {type(row).__name__}, expected an object")
        rows.append((lineno, row))
    return rows


def read_json(path: str | Path, what: str = "file", error: Error = CheckpointError) -> Any:
    """The JSON value in `path`."""
    try:
        return json.loads(read_text(path, what, error))
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def read_yaml(path: str | Path, what: str = "file", error: Error = ConfigError) -> Any:
    """The YAML value in `path`, read with `StrictLoader` (a key given twice is an error)."""
    text = read_text(path, what, error)
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {describe_yaml_error(e)}") from None


def read_safetensors(path: str | Path, what: str = "file", error: Error = CheckpointError) -> dict:
    """The tensors in a safetensors file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    _require_file(path, what, error)
    try:
        return load_file(str(path))  # memory-mapped: a model's weights are not read twice
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:  # truncated, or not safetensors
        raise error(f"{path}: damaged, not a complete safetensors file ({e})") from None


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    PyYAML silently keeps the last of two equal keys, so a recipe with two `rl:` sections
    would lose the first one without a word.
    """

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may override on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice (first on line {seen[key].line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def describe_yaml_error(e: yaml.YAMLError) -> str:
    """A PyYAML error on one line: where, then what (its own text spans several lines)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(e).split())
    context = getattr(e, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: {problem}" + (f" ({context})" if context else "")


# ----------------------------------------------------------------------------- writing


def check_output_dir(path: str | Path, what: str) -> Path:
    """A folder a command will write (made if missing), checked before any work: refused when it,
    or a folder above it, is a file, or when the nearest existing folder is not writable."""
    path = Path(path)
    for p in (path, *path.parents):
        if not p.exists():
            continue
        if not p.is_dir():
            where = "is a file" if p == path else f"cannot be made: {str(p)!r} is a file"
            raise ConfigError(f"{what} {str(path)!r} {where}; expected a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {str(path)!r}: folder {str(p)!r} is not writable")
        break
    return path


def check_not_cwd(path: str | Path, what: str) -> None:
    """Refuse to replace the current folder (or one holding it): its rename fails, or loses it."""
    here, target = Path.cwd().resolve(), Path(path).resolve()
    if target == here or target in here.parents:
        raise ConfigError(
            f"{what} {str(path)!r} is the current folder or holds it; a command replaces its OUT as a whole, "
            "so give a folder of its own (such as ./export)"
        )


def check_replaceable(path: str | Path, what: str, marker: str) -> Path:
    """A folder a command replaces as a whole (`atomic_dir`), checked before any work: refused when it
    holds files but no `marker` (the file the command writes there), so an --out that names someone's
    folder is never deleted. Writing again over the command's own earlier output is fine."""
    path = Path(path)
    check_not_cwd(path, what)
    if path.is_dir() and any(path.iterdir()) and not (path / marker).is_file():
        found = sorted(p.name for p in path.iterdir())
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise ConfigError(
            f"{what} {str(path)!r} holds other files ({shown}) and no {marker}; the command replaces the "
            "folder as a whole, so give a new or empty folder"
        )
    return path


def check_output_file(path: str | Path, what: str, suffixes: typing.Iterable[str]) -> Path:
    """A file a command will write, checked before any work: its folder exists and is writable,
    it is not a folder, and its suffix is one of `suffixes` (which say the format)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a folder; expected a file name")
    allowed = sorted(suffixes)
    if path.suffix.lower() not in allowed:
        raise ConfigError(f"{what} {str(path)!r}: expected a file name ending in one of {', '.join(allowed)}")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"{what} {str(path)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(path)!r}: folder {str(folder)!r} is not writable")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` in one rename.

    On an exception the temporary folder is removed and `path` is left as it was. With
    `overwrite=False` an existing non-empty `path` is an error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(root: Path) -> None:
    """Flush every file under `root` to disk, so a rename never publishes unwritten data."""
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
