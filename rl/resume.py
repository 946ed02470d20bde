"""A run's checkpoints across processes: what every process contributes to a save, what each one
restores on `--resume`, and how a lost process ends the run.

The file layout and its guarantees (atomic folders, checksums, refusal of a checkpoint that does
not fit) are rl/checkpoint.py's. Here is the part that involves several processes:

- Random states are gathered from every process, and each process restores its own, so a
  data-parallel run resumes bit for bit (tests/test_scaleout.py kills 2-process runs at random
  points and compares them with an uninterrupted run).
- Under DeepSpeed every process writes its part of the engine's own checkpoint (ZeRO's
  partitioned optimizer state and fp32 weights) into one staging folder, which the main process
  moves into the checkpoint before its manifest is written; on resume the engine reads it back.
  Under ZeRO-3 the full weights are also gathered and written as model.safetensors, for export.
- A collective that fails because another process died (`neuralese.distributed.collective`) stops the
  run with the step and the newest complete checkpoint to resume from.

Everything here is checkpoint I/O over explicit arguments: the trainer hands in what a checkpoint
holds (`RunParts`) and its own state (`Trainer.state_dict`), and takes back the state to load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from neuralese.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint, save_checkpoint
from neuralese.config import RunConfig, flat_dict, load_config, to_dict
from neuralese.distributed import (
    full_parameters,
    gather_rng_states,
    gather_states,
    write_engine_state,
    zero_stage,
)
from neuralese.errors import ConfigError, PeerLost
from neuralese.run_folder import resolve_paths


@dataclass
class RunParts:
    """What a checkpoint holds of a run besides the trainer's own state."""

    policy: Any  # NeuralesePolicy
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator  # this process's sampling stream
    value_head: torch.nn.Module | None = None
    engine: Any = None  # the DeepSpeed engine, which then owns the optimizer state
    # This process's own loop state beyond its random streams (`state_dict` / `load_state_dict` of
    # tensors, numbers and strings), when the loop keeps one: RAFT's round pool (neuralese.flywheel)
    process: Any = None


def save_run(
    accelerator: Accelerator, out: Path, step: int, parts: RunParts, state: dict[str, Any], keep: int
) -> None:
    """Checkpoint a run at `step` with the trainer's `state`. A collective: every process calls it."""
    # Collectives first: every process's random states, and under DeepSpeed the engine's own state
    # (each process its partition); then, under ZeRO-3, every process takes part in gathering the
    # weights, which the main one writes with the rest.
    rng = gather_rng_states(accelerator, parts.generator)
    local = None if parts.process is None else gather_states(accelerator, parts.process.state_dict())
    engine_dir = None
    if parts.engine is not None:
        state = {**state, "zero_stage": zero_stage(accelerator)}
        engine_dir = write_engine_state(accelerator, parts.engine, checkpoint_dir(out, step))
    with full_parameters(accelerator, parts.policy, parts.value_head):
        if not accelerator.is_main_process:
            return
        optimizer = parts.optimizer if parts.engine is None else None  # ZeRO's state is in engine_dir
        save_checkpoint(
            out,
            step,
            parts.policy,
            optimizer,
            parts.scheduler,
            rng,
            state,
            parts.value_head,
            keep=keep,
            engine_dir=engine_dir,
            process_states=local,
        )


def restore_run(accelerator: Accelerator, ckpt: Path, parts: RunParts) -> dict[str, Any]:
    """Load checkpoint `ckpt` into `parts` (this process's share); returns the trainer state it holds.
    A collective under DeepSpeed: every process calls it."""
    return load_checkpoint(
        ckpt,
        parts.policy,
        parts.optimizer,
        parts.scheduler,
        parts.generator,
        parts.value_head,
        rank=accelerator.process_index,
        world=accelerator.num_processes,
        engine=parts.engine,
        zero_stage=zero_stage(accelerator),
        process=parts.process,
    )


# What a resumed run may set otherwise than the run it continues: how long it runs, how it logs and
# evaluates, how long it waits, and the sections other commands read. Every other field decides
# what the checkpoint's weights, optimizer state and random streams mean.
MAY_CHANGE = (
    "output_dir",
    "rl.steps",
    "rl.reward_timeout_s",
    "rl.collective_timeout_s",
    "log",
    "eval",
    "vllm",
    "pretrain",
    "reward_model",
    "codec",
    "translate",
)


def recipe_changes(out: Path, cfg: RunConfig) -> dict[str, tuple[object, object]]:
    """{key: (in the run's config.yaml, in `cfg` now)} for each field where they differ, paths compared
    made absolute (a run's config.yaml holds them so; a recipe names them from the working directory)."""
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        return {}
    saved = flat_dict(to_dict(resolve_paths(load_config(saved_file))))
    now = flat_dict(to_dict(resolve_paths(cfg)))
    keys = sorted((set(saved) | set(now)) - {"output_dir"})  # the run is where its folder is now
    return {k: (saved.get(k), now.get(k)) for k in keys if saved.get(k) != now.get(k)}


def check_same_recipe(out: Path, changes: dict[str, tuple[object, object]]) -> list[str]:
    """Refuse to resume a run with a recipe that differs from its config.yaml where it matters: the
    checkpoint would go on under another mode, algorithm or task, and config.yaml (which export
    rebuilds the checkpoints from) would then describe weights it did not train. Returns the notice
    for what may differ (empty when nothing does)."""
    differ = [k for k in changes if not any(k == m or k.startswith(f"{m}.") for m in MAY_CHANGE)]
    if differ:
        shown = "; ".join(f"{k}: {changes[k][0]!r} in the run, {changes[k][1]!r} now" for k in differ[:3])
        raise ConfigError(
            f"--resume: {out / 'config.yaml'} was written by another recipe ({shown}). Resume with the recipe "
            "the run was started with (only rl.steps, log, eval and timeouts may change), or start a new "
            "run with --out"
        )
    if not changes:
        return []
    shown = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changes.items())[:8]]
    more = [f"and {len(changes) - 8} more"] if len(changes) > 8 else []
    return [
        f"--resume: the recipe differs from the run's {out / 'config.yaml'} in {'; '.join(shown + more)}; "
        "these apply from here on (the checkpoint's weights, optimizer and schedule continue as saved)"
    ]


def guarded(out: Path, step: int, fn):
    """`fn()`; a process lost in one of its collectives ends the run at `step` with where to resume."""
    try:
        return fn()
    except PeerLost as e:
        saved = list_checkpoints(out)
        raise PeerLost(
            f"step {step}: {e}. The newest complete checkpoint is {saved[-1] if saved else 'none'}: "
            "once every process can run, launch the same command with --resume"
        ) from e
