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
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from neuralese.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint, save_checkpoint
from neuralese.config import load_config, to_dict
from neuralese.distributed import full_parameters, gather_rng_states, write_engine_state, zero_stage
from neuralese.errors import ConfigError, PeerLost

if TYPE_CHECKING:
    from neuralese.trainer import Trainer


def save_run(t: Trainer) -> None:
    """Checkpoint the trainer at its current step. A collective: every process calls it."""
    # Collectives first: every process's random states, and under DeepSpeed the engine's own state
    # (each process its partition); then, under ZeRO-3, every process takes part in gathering the
    # weights, which the main one writes with the rest.
    rng = gather_rng_states(t.accelerator, t.generator)
    step = t.state["step"]
    engine_dir = None
    if t.engine is not None:
        t.state["zero_stage"] = zero_stage(t.accelerator)
        engine_dir = write_engine_state(t.accelerator, t.engine, checkpoint_dir(t.out, step))
    with full_parameters(t.accelerator, t.policy, t.value_head):
        if not t.accelerator.is_main_process:
            return
        optimizer = t.optimizer if t.engine is None else None  # ZeRO's state is in engine_dir
        if t.curriculum.enabled:
            t.state["curriculum"] = t.curriculum.state_dict()
        save_checkpoint(
            t.out, step, t.policy, optimizer, t.scheduler, rng, t.state, t.value_head,
            keep=t.cfg.log.keep_checkpoints, engine_dir=engine_dir,
        )  # fmt: skip


# What a resumed run may set otherwise than the run it continues: how long it runs, how it logs and
# evaluates, how long it waits, and the sections other commands read. Every other field decides
# what the checkpoint's weights, optimizer state and random streams mean.
MAY_CHANGE = (
    "output_dir", "rl.steps", "rl.reward_timeout_s", "rl.collective_timeout_s",
    "log", "eval", "vllm", "pretrain", "reward_model", "codec", "translate",
)  # fmt: skip


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    """Nested sections as dotted keys; lists and other values as they are."""
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "args":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_changes(t: Trainer) -> dict[str, tuple[object, object]]:
    """{key: (in the run's config.yaml, in the recipe now)} for each field where they differ."""
    saved_file = t.out / "config.yaml"
    if not saved_file.is_file():
        return {}
    saved, now = _flat(to_dict(load_config(saved_file))), _flat(to_dict(t.cfg))
    return {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}


def check_same_recipe(t: Trainer, changes: dict[str, tuple[object, object]]) -> None:
    """Refuse to resume a run with a recipe that differs from its config.yaml where it matters: the
    checkpoint would go on under another mode, algorithm or task, and config.yaml (which export
    rebuilds the checkpoints from) would then describe weights it did not train."""
    differ = [k for k in changes if not any(k == m or k.startswith(f"{m}.") for m in MAY_CHANGE)]
    if differ:
        shown = "; ".join(f"{k}: {changes[k][0]!r} in the run, {changes[k][1]!r} now" for k in differ[:3])
        raise ConfigError(
            f"--resume: {t.out / 'config.yaml'} was written by another recipe ({shown}). Resume with the recipe "
            "the run was started with (only rl.steps, log, eval and timeouts may change), or start a new "
            "run with --out"
        )


def resume_run(t: Trainer) -> None:
    """Continue from the newest complete checkpoint; a corrupted one is an error, never skipped."""
    ckpts = list_checkpoints(t.out)
    if not ckpts:
        t._notice(f"--resume: no complete checkpoint in {t.out / 'checkpoints'}; starting at step 0")
        t.log.truncate(0)
        return
    changes = recipe_changes(t)
    check_same_recipe(t, changes)
    state = load_checkpoint(
        ckpts[-1], t.policy, t.optimizer, t.scheduler, t.generator, t.value_head,
        rank=t.rank, world=t.world, engine=t.engine, zero_stage=zero_stage(t.accelerator),
    )  # fmt: skip
    t.state.update(state)
    if t.curriculum.enabled and "curriculum" in state:
        t.curriculum.load_state_dict(state["curriculum"])
        t.policy.config.num_thoughts = t.curriculum.num_thoughts
    t.log.truncate(t.state["step"])
    t._notice(f"--resume: continuing from {ckpts[-1]} (step {t.state['step']} of {t.cfg.rl.steps})")
    if changes:
        shown = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changes.items())[:8]]
        more = [f"and {len(changes) - 8} more"] if len(changes) > 8 else []
        t._notice(
            f"--resume: the recipe differs from the run's {t.out / 'config.yaml'} in {'; '.join(shown + more)}; "
            "these apply from here on (the checkpoint's weights, optimizer and schedule continue as saved)"
        )


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
