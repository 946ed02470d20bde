"""Training checkpoints: written atomically, verified on load, resumed bit for bit.

`RUN/checkpoints/step-N/` holds

    model.safetensors      trainable weights: every model weight, or only the LoRA weights
    feedback.safetensors   feedback adapter and gate
    value_head.safetensors PPO critic (PPO only)
    optimizer.pt           optimizer and scheduler state (tensors and numbers only)
    rng.pt                 torch, sampling-generator, Python and NumPy random states, one set per process
    trainer_state.json     step, data position, non-finite counters (and the ZeRO stage under DeepSpeed)
    process_state.pt       what a loop keeps per process beyond its random streams, one per process,
                           when it keeps any (RAFT's round pool: neuralese.flywheel)
    deepspeed/             under DeepSpeed: the engine's own checkpoint (ZeRO's partitioned
                           optimizer state and fp32 weights), which every process writes its part of
    manifest.json          sha256 of every file above, written last

The folder is built under a temporary name and renamed when complete, so a crash never
leaves a `step-N` that looks complete; old checkpoints are renamed away before they are
deleted, for the same reason. What a killed writer leaves (`.step-N.tmp-*`, `.step-N.del-*`)
is never read and is removed by the next save. `tests/test_faults.py` SIGKILLs training runs
at random points, including mid-write, and checks that each resume ends bit for bit where an
uninterrupted run does.

`manifest.json` catches later corruption (a truncated or edited file). A crash cannot cause
that, so resuming from a corrupted newest checkpoint is an error naming the file and the
older checkpoint to fall back to: silently going back (or starting over) would hide a disk
or a copy that is failing, and the next saves would delete the evidence.

Every process draws from its own random streams, so `rng.pt` keeps one set per process (rank
order) and a run resumes only with the number of processes that wrote it; anything else would
continue with other samples than the uninterrupted run. The weights and optimizer state are the
same on every data-parallel process and are written once, by the main one.

Nothing here unpickles arbitrary objects: our `.pt` files are read with `weights_only=True`.
DeepSpeed reads its own files in `deepspeed/` with its own loader, which does unpickle; those
files are checked against the manifest first, so only what this run wrote is read.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from pickle import UnpicklingError  # the error type only: nothing here unpickles
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_file, save_model

from neuralese.errors import CheckpointError
from neuralese.io import atomic_dir, read_json, read_safetensors, write_json

STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"
ENGINE_DIR = "deepspeed"
ENGINE_TAG = "engine"  # the engine's checkpoint is deepspeed/engine/
PROCESS_STATE = "process_state.pt"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a run draws from (NumPy's as plain lists, loadable with weights_only)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights training changes: LoRA weights for a peft model, else all of them."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model)
    return model.state_dict()


def _save_full_model(model: torch.nn.Module, path: Path) -> None:
    """Every weight of `model`; tied embeddings written once when the weights own their storage."""
    state = model.state_dict()
    if all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in state.values()):
        save_model(model, str(path))  # handles tied embeddings
        return
    # DeepSpeed ZeRO keeps the weights as views of one flat buffer, which safetensors' tied-weight
    # check cannot split: write copies (a tied weight then appears under both names, which loads).
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(path))


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    policy,
    optimizer: torch.optim.Optimizer | None,
    scheduler,
    rng_states: list[dict[str, Any]],
    trainer_state: dict[str, Any],
    value_head: torch.nn.Module | None = None,
    keep: int = 2,
    engine_dir: Path | None = None,
    process_states: list[dict[str, Any]] | None = None,
) -> Path:
    """Write `checkpoints/step-{step}` atomically and delete all but the newest `keep`.

    `rng_states`: every process's `rng_state`, in rank order; `process_states`, when the loop keeps
    state of its own per process, every process's, in rank order. Under DeepSpeed `optimizer` is None
    and `engine_dir` is the folder the engine wrote (every process its part, next to the
    checkpoint); it is moved in as `deepspeed/` before the manifest is written."""
    target = checkpoint_dir(run_dir, step)
    with atomic_dir(target) as tmp:
        if hasattr(policy.model, "peft_config"):
            save_file(
                {k: v.detach().clone().contiguous() for k, v in trainable_state(policy.model).items()},
                str(tmp / "model.safetensors"),
            )
        else:
            _save_full_model(policy.model, tmp / "model.safetensors")
        save_file(policy.adapter.state_dict(), str(tmp / "feedback.safetensors"))
        if value_head is not None:
            save_file(value_head.state_dict(), str(tmp / "value_head.safetensors"))
        torch.save(
            {
                "optimizer": None if optimizer is None else optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
            tmp / "optimizer.pt",
        )
        torch.save({"world": len(rng_states), "ranks": rng_states}, tmp / "rng.pt")
        if process_states is not None:
            torch.save({"world": len(process_states), "ranks": process_states}, tmp / PROCESS_STATE)
        write_json(tmp / "trainer_state.json", {**trainer_state, "step": step})
        if engine_dir is not None:
            Path(engine_dir).rename(tmp / ENGINE_DIR)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        write_json(tmp / MANIFEST, {name: _sha256(tmp / name) for name in files})
    for old in list_checkpoints(run_dir)[:-keep]:
        _delete(old)
    for leftover in target.parent.glob(".step-*"):  # from writers killed mid-save or mid-delete
        shutil.rmtree(leftover, ignore_errors=True)
    return target


def _delete(ckpt: Path) -> None:
    """Rename, then delete: a crash mid-delete must not leave a `step-N` with its manifest but
    without some of its files."""
    trash = ckpt.with_name(f".{ckpt.name}.del-{os.getpid()}")
    ckpt.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders (those with a manifest), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := STEP_DIR.match(p.name)) and (p / MANIFEST).is_file()
    ]
    return [p for _, p in sorted(found)]


def check_run_folder(out: Path, what: str = "output_dir (--out)") -> None:
    """Refuse a run folder that is a model folder, or inside another run's checkpoints: the run's
    config.yaml, logs and checkpoints would go in among them (and a folder with config.json is then
    read as the model alone by export, eval and inspect)."""
    if (out / "config.json").is_file():
        raise CheckpointError(
            f"{what} {str(out)!r} is a model folder (config.json); a run writes config.yaml, logs and "
            "checkpoints/ into its folder: give a folder of its own"
        )
    target = out.resolve()
    for p in (target, *target.parents):
        if p.name == "checkpoints" and (p.parent / "config.yaml").is_file():
            raise CheckpointError(
                f"{what} {str(out)!r} is inside {str(p)!r}, the checkpoints of the run in {str(p.parent)!r}; "
                "give a folder of its own"
            )


def verify(ckpt: Path) -> None:
    """Raise CheckpointError naming the first file that is missing or does not match the manifest."""
    try:
        manifest = read_json(ckpt / MANIFEST, MANIFEST)
        if not isinstance(manifest, dict):
            raise CheckpointError(f"expected a JSON object, got {type(manifest).__name__}")
    except CheckpointError as e:
        raise CheckpointError(
            f"{ckpt}: unreadable {MANIFEST} ({e}); the checkpoint is corrupted. {_fallback(ckpt)}"
        ) from None
    for name, digest in manifest.items():
        path = ckpt / name
        if not path.is_file():
            raise CheckpointError(
                f"{ckpt}: {name} is missing; the checkpoint is corrupted. {_fallback(ckpt)}"
            )
        if _sha256(path) != digest:
            raise CheckpointError(
                f"{ckpt}: {name} does not match its checksum in {MANIFEST}; the checkpoint is corrupted "
                f"(the file changed after it was written). {_fallback(ckpt)}"
            )


def load_weights(ckpt: Path, policy, value_head: torch.nn.Module | None = None) -> None:
    """The model (or LoRA) weights, feedback adapter and value head of a checkpoint, into a policy
    built from the run's config: what resuming and exporting share. Call `verify` first."""
    if hasattr(policy.model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy.model, read_safetensors(ckpt / "model.safetensors", "model weights"))
    else:
        from safetensors import SafetensorError

        weights = ckpt / "model.safetensors"
        try:
            load_model(policy.model, str(weights))  # streamed into the model: its weights are not held twice
        except SafetensorError as e:  # its checksum matched: damaged before its manifest was written
            raise CheckpointError(f"{weights}: damaged, not a complete safetensors file ({e})") from None
    policy.adapter.load_state_dict(read_safetensors(ckpt / "feedback.safetensors", "feedback weights"))
    if value_head is not None:
        value_head.load_state_dict(read_safetensors(ckpt / "value_head.safetensors", "value head weights"))


def _fallback(ckpt: Path) -> str:
    """What the user can do about a corrupted checkpoint: the older one to fall back to, if any."""
    older = [p for p in list_checkpoints(ckpt.parent.parent) if _step(p) < _step(ckpt)]
    if older:
        return f"Move {ckpt.name} out of {ckpt.parent} to resume from {older[-1].name}, the newest before it."
    return (
        f"No older checkpoint exists: move {ckpt.name} away to resume from step 0, or start anew with --out."
    )


def _step(ckpt: Path) -> int:
    m = STEP_DIR.match(ckpt.name)
    return int(m.group(1)) if m else -1


def load_checkpoint(
    ckpt: Path,
    policy,
    optimizer: torch.optim.Optimizer,
    scheduler,
    generator: torch.Generator,
    value_head: torch.nn.Module | None = None,
    rank: int = 0,
    world: int = 1,
    engine=None,
    zero_stage: int = 0,
    process=None,
) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote into process `rank` of `world`; returns the
    trainer state. Under DeepSpeed `engine` (at ZeRO stage `zero_stage`) loads the weights and
    its optimizer state itself: a collective, every process calls this. `process`: the loop's own
    per-process state (`load_state_dict`), when it keeps one (`process_states` of the save)."""
    verify(ckpt)
    if process is not None:
        process.load_state_dict(_process_state(ckpt, rank, world))
    opt, rng = _load_pt(ckpt / "optimizer.pt"), _load_pt(ckpt / "rng.pt")
    state = read_json(ckpt / "trainer_state.json", "trainer state")
    mine = _rank_rng(ckpt, rng, rank, world)
    try:
        if engine is None:
            _check_plain(ckpt, opt, state)
            load_weights(ckpt, policy, value_head)
            optimizer.load_state_dict(opt["optimizer"])
        else:
            _load_engine(ckpt, engine, state, zero_stage)
    except (RuntimeError, KeyError, ValueError, AssertionError) as e:  # intact files that do not fit this run
        raise CheckpointError(
            f"{ckpt}: does not fit the model this recipe builds ({' '.join(str(e).split())[:300]}); "
            "resume with the recipe the run was started with (its config.yaml)"
        ) from None
    scheduler.load_state_dict(opt["scheduler"])
    set_rng_state(mine, generator)
    return state


def _rank_rng(ckpt: Path, rng: dict[str, Any], rank: int, world: int) -> dict[str, Any]:
    """This process's random states; a checkpoint from before per-process states is one process's."""
    ranks = rng["ranks"] if "ranks" in rng else [rng]
    if len(ranks) != world:
        raise CheckpointError(
            f"{ckpt}: written by a run of {len(ranks)} process(es), resumed with {world}. Every process "
            f"samples from its own random streams, which the checkpoint holds: resume with "
            f"--num_processes {len(ranks)} (or {len(ranks)} machines' worth), or start a new run from "
            "its weights (`neuralese export`)"
        )
    return ranks[rank]


def _process_state(ckpt: Path, rank: int, world: int) -> dict[str, Any]:
    """This process's part of `process_state.pt`; a checkpoint without one was written by a run that kept none."""
    path = ckpt / PROCESS_STATE
    if not path.is_file():
        raise CheckpointError(
            f"{ckpt}: has no {PROCESS_STATE}, which this recipe keeps (RAFT's round pool, "
            "rl.raft_samples_per_round > 0): resume with the recipe the run was started with (its config.yaml)"
        )
    ranks = _load_pt(path)["ranks"]
    if len(ranks) != world:  # rng.pt's check names the remedy; the two files are written together
        raise CheckpointError(f"{path}: written by {len(ranks)} process(es), resumed with {world}")
    return ranks[rank]


def _check_plain(ckpt: Path, opt: dict[str, Any], state: dict[str, Any]) -> None:
    if opt["optimizer"] is not None:
        return
    if not (ckpt / ENGINE_DIR).is_dir():
        raise CheckpointError(
            f"{ckpt}: written under DeepSpeed without optimizer state; it exports but cannot resume"
        )
    raise CheckpointError(
        f"{ckpt}: written under DeepSpeed ZeRO-{state.get('zero_stage', '?')}, whose optimizer state "
        f"({ENGINE_DIR}/) only a DeepSpeed engine reads: resume with the accelerate config the run was "
        "started with, or start a new run from its weights (`neuralese export`)"
    )


def _load_engine(ckpt: Path, engine, state: dict[str, Any], zero_stage: int) -> None:
    """ZeRO's weights and partitioned optimizer state, through the engine's own loader."""
    if not (ckpt / ENGINE_DIR / ENGINE_TAG).is_dir():
        raise CheckpointError(
            f"{ckpt}: has no {ENGINE_DIR}/{ENGINE_TAG}/ (it was written without DeepSpeed, or by a version "
            f"that kept no engine state); resume it without DeepSpeed, or start a new run from its weights"
        )
    saved = state.get("zero_stage")
    if saved != zero_stage:
        raise CheckpointError(
            f"{ckpt}: written under DeepSpeed ZeRO-{saved}, resumed under ZeRO-{zero_stage}: the "
            "partitioned optimizer state is laid out per stage. Resume with the accelerate config the "
            "run was started with"
        )
    path, _ = engine.load_checkpoint(
        str(ckpt / ENGINE_DIR),
        tag=ENGINE_TAG,
        load_module_strict=True,
        load_optimizer_states=True,
        load_lr_scheduler_states=False,
    )
    if path is None:
        raise CheckpointError(f"{ckpt / ENGINE_DIR}: DeepSpeed found no checkpoint to load there")


def _load_pt(path: Path) -> Any:
    """A `.pt` file of tensors, numbers, strings and containers; any other object is refused
    (`weights_only=True`), so a planted pickle never runs."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols: our error says more
            warnings.simplefilter("ignore")
            return torch.load(path, weights_only=True)
    except UnpicklingError:
        raise CheckpointError(
            f"{path}: holds objects other than tensors and numbers; refusing to unpickle it "
            "(neuralese writes none: the file was not written by this checkpoint code)"
        ) from None
    except (RuntimeError, EOFError) as e:  # not a zip archive, or cut short
        brief = " ".join(str(e).split()[:12])
        raise CheckpointError(f"{path}: damaged, not a complete PyTorch file ({brief})") from None
