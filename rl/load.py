"""Loading a policy from any folder the project writes: one function above the policy.

`load_policy` accepts four kinds of folder, told apart by the files they hold:

    exported folder   config.json + neuralese.json + feedback.safetensors (what `export` writes)
    model folder      config.json only: a plain Hugging Face model, loaded with feedback off
    run folder        config.yaml + checkpoints/: its newest complete checkpoint
    run checkpoint    RUN/checkpoints/step-N/ with manifest.json

A model folder is `NeuralesePolicy.from_pretrained`'s. A run checkpoint holds only what training
changes (every weight, or only the LoRA weights), so the policy is rebuilt the way the trainer built
it (neuralese.build): on the run's copy of its base model (`RUN/base/`, neuralese.run_folder; for a
run written before runs kept one, the `model.path` of its `config.yaml`) with its LoRA settings; the
checkpoint's weights go on top, after the manifest's checksums have been checked.

`task_of` reads what a folder knows of the task it was trained on (environment, test split,
evaluation budgets, seed): a run's `config.yaml`, an exported folder's `neuralese.json` or an
as-is model's `pretrain_log.json` (both written with `task_record`), so `neuralese eval` and
`neuralese inspect` need no flags for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open

from neuralese.build import build_policy
from neuralese.checkpoint import MANIFEST, STEP_DIR, list_checkpoints, load_weights, trainable_state, verify
from neuralese.config import EvalConfig, ModelConfig, RunConfig, from_dict, load_config
from neuralese.curriculum import Curriculum
from neuralese.errors import CheckpointError, ConfigError
from neuralese.evaluate import Task, run_task
from neuralese.io import read_json
from neuralese.models import check_model_folder
from neuralese.policy import CONFIG_FILE, NeuralesePolicy
from neuralese.run_folder import base_model, with_model_path

PRETRAIN_LOG = "pretrain_log.json"
"""What stage 0 writes beside the as-is model: its loss history and `task` (see `task_record`)."""

KINDS = (
    "an exported folder or Hugging Face model folder (config.json), a run folder (config.yaml + "
    "checkpoints/) or a run checkpoint (RUN/checkpoints/step-N with manifest.json)"
)


@dataclass
class Source:
    """Where a policy comes from: a model folder, or a checkpoint of a run and that run's config."""

    path: Path
    """The folder as the user named it."""
    kind: Literal["model", "checkpoint"]
    """`model`: a Hugging Face folder (exported or plain); `checkpoint`: a run checkpoint."""
    checkpoint: Path | None = None
    """The `step-N` folder (for a run folder, its newest complete checkpoint)."""
    run: Path | None = None
    """The run folder the checkpoint belongs to."""
    step: int | None = None
    """The checkpoint's RL step."""
    config: RunConfig | None = None
    """The run's resolved config (its `config.yaml`)."""


def locate(path: str | Path) -> Source:
    """What kind of folder `path` is, or a CheckpointError naming what it lacks."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such folder; expected {KINDS}")
    if not path.is_dir():
        raise CheckpointError(f"{path}: is a file; expected {KINDS}")
    if (path / "config.json").is_file():
        return Source(path, "model")
    if STEP_DIR.match(path.name) or (path / MANIFEST).is_file():
        return _checkpoint_source(path, path)
    if (path / "config.yaml").is_file() or (path / "checkpoints").is_dir():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(
                f"{path}: run folder has no complete checkpoint (no checkpoints/step-N/ with {MANIFEST}); "
                "a run writes one every log.save_every steps and at its end"
            )
        return _checkpoint_source(found[-1], path)
    raise CheckpointError(f"{path}: has neither config.json, config.yaml nor {MANIFEST}; expected {KINDS}")


def _checkpoint_source(ckpt: Path, given: Path) -> Source:
    """A run checkpoint, with the run's config read back from RUN/config.yaml."""
    match = STEP_DIR.match(ckpt.name)
    if match is None or ckpt.parent.name != "checkpoints":
        raise CheckpointError(f"{ckpt}: a run checkpoint must be a folder RUN/checkpoints/step-N")
    if not (ckpt / MANIFEST).is_file():
        raise CheckpointError(
            f"{ckpt}: has no {MANIFEST}, so it is incomplete (the run stopped while writing it); "
            "use an earlier checkpoint or the run folder"
        )
    run = ckpt.parent.parent
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        raise CheckpointError(
            f"{ckpt}: the run's {cfg_file} is missing; it names the base model (model.path) and "
            "the LoRA settings this checkpoint's weights apply to"
        )
    return Source(given, "checkpoint", ckpt, run, int(match.group(1)), load_config(cfg_file))


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> NeuralesePolicy:
    """The policy in an exported, model, run or checkpoint folder, in eval mode."""
    return load_source(locate(path), device)


def model_folder(src: Source) -> str:
    """The model folder a located source loads from: the folder itself, or the base model its run's
    checkpoints apply to (holding the tokenizer)."""
    return str(src.path) if src.kind == "model" else base_model(src.run, src.config)


def load_source(src: Source, device: str | torch.device = "cpu") -> NeuralesePolicy:
    """Load a located source: from_pretrained for a model folder, a rebuild for a checkpoint."""
    if src.kind == "model":
        return NeuralesePolicy.from_pretrained(src.path, ModelConfig(), device=device).eval()
    cfg, ckpt = src.config, src.checkpoint
    verify(ckpt)
    base = model_folder(src)
    check_model_folder(base, what=f"{src.run / 'config.yaml'}: model.path (the run's base model)")
    policy = build_policy(with_model_path(cfg, base), device)
    try:
        load_weights(ckpt, policy)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(
            f"{ckpt}: its weights do not fit the model built from {src.run / 'config.yaml'} "
            f"(model.path={cfg.model.path}, model.lora.r={cfg.model.lora.r}): {e}"
        ) from None
    _check_lora_keys(ckpt, policy)
    saved_curriculum(src, policy)  # the thoughts of the stage it was saved at
    return policy.eval()


def saved_curriculum(src: Source, policy: NeuralesePolicy | None = None) -> Curriculum:
    """The curriculum at the stage a checkpoint was saved at (setting `policy`'s thoughts, if given)."""
    curriculum = Curriculum(src.config.curriculum, policy.config if policy is not None else None)
    state = read_json(src.checkpoint / "trainer_state.json", "trainer state")
    if "curriculum" in state:
        curriculum.load_state_dict(state["curriculum"])
    return curriculum


def _check_lora_keys(ckpt: Path, policy: NeuralesePolicy) -> None:
    """peft loads a LoRA state dict leniently; a checkpoint whose keys it would skip is the wrong one."""
    if not hasattr(policy.model, "peft_config"):
        return
    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        found = set(f.keys())
    expected = set(trainable_state(policy.model))
    if found != expected:
        extra, missing = sorted(found - expected)[:3], sorted(expected - found)[:3]
        raise CheckpointError(
            f"{ckpt}/model.safetensors does not hold the LoRA weights of the model built from "
            f"{ckpt.parent.parent / 'config.yaml'} (model.path, model.lora); "
            f"unexpected keys: {extra}, missing keys: {missing}"
        )


# ----------------------------------------------------------------------------- the task a folder knows


def task_of(src: Source) -> Task | None:
    """The task of a located folder: a run's (its answer budget at the checkpoint's curriculum stage), or
    the `task` an exported or as-is folder records (`task_record`); None when it records none."""
    if src.kind == "checkpoint":
        return run_task(src.config, saved_curriculum(src))
    for name in (CONFIG_FILE, PRETRAIN_LOG):
        file = src.path / name
        data = read_json(file, name) if file.is_file() else None
        if isinstance(data, dict) and isinstance(data.get("task"), dict):
            return _read_task(data["task"], file)
    return None


def _read_task(record: dict, file: Path) -> Task:
    """A `task_record` read back, checked: a CheckpointError naming the file when it is malformed."""
    try:
        evaluation = from_dict(EvalConfig, record["eval"], source=str(file), prefix="task.eval.")
        args = record["env_args"]
        if not isinstance(args, dict):
            raise TypeError(f"env_args is {type(args).__name__}, not a mapping")
        return Task(str(record["env"]), args, str(record["split"]), evaluation, int(record["seed"]))
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(
            f"{file}: its `task` record is malformed ({e}); expected what neuralese.load.task_record writes"
        ) from None
