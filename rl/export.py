"""Stage 2: export a policy for inference.

Launch: `neuralese export RUN_DIR_OR_CHECKPOINT OUT [--overwrite]`.

`export` takes any folder `neuralese.load_policy` loads (exported, model, run or checkpoint folder)
and writes a Hugging Face folder with LoRA merged (`AutoModelForCausalLM` loads the language model
alone, with no neuralese import), the tokenizer, the feedback adapter's weights and
`neuralese.json`: the feedback config, what training used (TBPTT window, algorithm, environment)
and where the weights came from (run, step). The folder is built under a temporary name and
renamed when complete, so no half-written export is ever left.
"""

from __future__ import annotations

from pathlib import Path

from neuralese.errors import CheckpointError
from neuralese.evaluate import task_record
from neuralese.io import atomic_dir, check_not_cwd, check_output_dir, read_json
from neuralese.kinds import policy_kind
from neuralese.load import Source, load_source, locate, task_of
from neuralese.policy import CONFIG_FILE
from neuralese.run_folder import base_model


def export_meta(src: Source) -> dict:
    """What `neuralese.json` records beside the feedback config: training settings, provenance and the
    task (`neuralese eval` and `inspect` of the exported folder read it)."""
    task = task_of(src)
    meta = {} if task is None else {"task": task_record(task)}
    if src.kind == "model":
        previous = _read_meta(src.path)
        return {
            **meta,
            "training": previous.get("training"),
            "source": {**previous.get("source", {}), "exported_from": str(src.path.resolve())},
        }
    cfg = src.config
    return {
        **meta,
        "training": {
            "tbptt_window": cfg.neuralese.tbptt_window,
            "algorithm": cfg.rl.algorithm,
            "env": cfg.env.name,
            "env_args": cfg.env.args,
            "lora_r": cfg.model.lora.r,
            "dtype": cfg.model.dtype,
        },
        "source": {
            "run": str(src.run.resolve()),
            "step": src.step,
            "checkpoint": str(src.checkpoint.resolve()),
            "base_model": cfg.model.path,
        },
    }


def _read_meta(folder: Path) -> dict:
    meta_file = folder / CONFIG_FILE
    return read_json(meta_file, CONFIG_FILE) if meta_file.is_file() else {}


def check_out(out: Path, src: Source, overwrite: bool) -> None:
    """Refuse an OUT that would lose data: a non-empty folder (unless asked), a file, the source, the
    run's checkpoints or a folder holding them, or the base model a checkpoint's weights apply to."""
    check_output_dir(out, "export OUT")
    check_not_cwd(out, "export OUT")
    target = out.resolve()
    keep = [(src.path, "the source")]
    if src.kind == "checkpoint":
        checkpoints = src.checkpoint.parent
        if checkpoints.resolve() in target.parents:
            raise CheckpointError(
                f"{out}: is inside {checkpoints}, the run's checkpoints; export to a folder outside them"
            )
        keep += [
            (checkpoints, "the run's checkpoints"),
            (
                Path(src.config.model.path).expanduser(),
                f"the base model, model.path in {src.run / 'config.yaml'}",
            ),
            (Path(base_model(src.run, src.config)), "the run's copy of its base model"),
        ]
    for folder, what in keep:
        if target == folder.resolve() or target in folder.resolve().parents:
            raise CheckpointError(
                f"{out}: is {folder} ({what}) or contains it; export to a folder outside it"
            )
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise CheckpointError(f"{out}: exists and is not empty; pass --overwrite to replace it")


def export(src: str | Path, out: str | Path, overwrite: bool = False, device: str = "cpu") -> Path:
    """Write the policy at `src` (any kind `load_policy` takes) to `out` as an exported folder."""
    source, out = locate(src), Path(out)
    kind = policy_kind(source.config) if source.config is not None else None
    if kind is not None and kind.export_refusal:
        raise CheckpointError(f"{src}: {kind.export_refusal}")
    check_out(out, source, overwrite)
    policy = load_source(source, device)
    with atomic_dir(out) as tmp:
        policy.save_pretrained(tmp, extra=export_meta(source))
    return out
