"""A run folder that opens from anywhere: its base model copied in, its paths absolute.

A run writes `config.yaml` with every path it reads made absolute (`model.path`, plug-in files named
by `env.name` and `rewards[].fn`, the models of a cross-model run), so `neuralese eval RUN`,
`inspect RUN`, `export RUN` and `train --resume RUN` work from any folder. Its base model is copied
into `RUN/base/` when the run starts: the checkpoints hold only what training changes (every weight,
or only the LoRA weights), and the base is what they are applied to, so moving, deleting or
re-training the folder `model.path` names breaks no run built on it. Files are hard-linked where the
file system allows (no disk space, and a base replaced later keeps the run's copy intact, as
`neuralese pretrain` replaces a folder with a new one rather than writing into its files); elsewhere
they are copied. A cross-model run (a policy kind) reads its models where its config says.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from neuralese.checkpoint import check_run_folder, list_checkpoints
from neuralese.config import RunConfig
from neuralese.errors import ConfigError
from neuralese.io import atomic_dir
from neuralese.plugins import absolute_reference

BASE = "base"
"""The run's copy of its base model, `RUN/base/`."""


def absolute(path: str | None) -> str | None:
    """A folder path made absolute (read from the working directory, as a recipe's paths are)."""
    return None if path is None else str(Path(path).expanduser().resolve())


def resolve_paths(cfg: RunConfig) -> RunConfig:
    """A copy of `cfg` whose paths read the same from any folder: the model folders, and plug-in
    files given as `path/to/file.py:name`."""
    model = dataclasses.replace(cfg.model, path=absolute(cfg.model.path))
    env = dataclasses.replace(cfg.env, name=absolute_reference(cfg.env.name))
    rewards = cfg.rewards
    if rewards is not None:
        rewards = [dataclasses.replace(r, fn=absolute_reference(r.fn)) for r in rewards]
    cross = dataclasses.replace(
        cfg.cross, thinker=absolute(cfg.cross.thinker), translator=absolute(cfg.cross.translator)
    )
    return dataclasses.replace(cfg, model=model, env=env, rewards=rewards, cross=cross)


def with_model_path(cfg: RunConfig, path: str) -> RunConfig:
    """`cfg` with `model.path` set to `path` (the run's copy of its base)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=path))


def base_model(run: Path, cfg: RunConfig) -> str:
    """The folder a run's checkpoints apply to: its own copy (`RUN/base/`), or for a run written
    before runs kept one (and for a cross-model run), `model.path`."""
    copy = Path(run) / BASE
    return str(copy) if (copy / "config.json").is_file() else cfg.model.path


def copy_base(cfg: RunConfig, run: Path) -> str:
    """Copy the base model into `RUN/base/` (hard links where possible) and return its folder; a
    cross-model run's policy kind reads its models in place (`model.path`)."""
    if cfg.policy_kind is not None:
        return cfg.model.path
    source, target = Path(cfg.model.path).resolve(), Path(run).resolve() / BASE
    if source == target:  # the run's own copy (a fresh start over an earlier, failed one)
        return str(target)
    skip = {target.parent, target}  # a run folder inside its base model's folder is not copied into itself

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if (Path(folder) / n).resolve() in skip]

    with atomic_dir(target) as tmp:
        shutil.copytree(source, tmp, ignore=ignore, copy_function=_link_or_copy, dirs_exist_ok=True)
    return str(target)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


def prepare_run_dir(out: Path, resume: bool) -> None:
    """The run folder made, or refused: a finished or running run without --resume, a model folder,
    a folder inside another run's checkpoints."""
    if not resume and (out / "metrics.jsonl").exists():
        raise ConfigError(
            f"output_dir {str(out)!r} already holds a run (metrics.jsonl); "
            "pass --resume to continue it, or --out to start a new one"
        )
    check_run_folder(out)
    out.mkdir(parents=True, exist_ok=True)


def fresh_start(out: Path, resume: bool) -> bool:
    """Whether the run starts at step 0 (no checkpoint to continue from)."""
    return not resume or not list_checkpoints(out)
