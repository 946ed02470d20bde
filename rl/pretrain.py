"""Stage 0: train or fine-tune the language model as-is (feedback off) with TRL's SFTTrainer.

Launch: `neuralese pretrain RECIPE.yaml [--set key=value ...]`.

With `model.tiny` set, a fresh tiny model is built, with a tokenizer made from the
environment's own text; otherwise the model at `model.path` is fine-tuned. The target of
each example is the environment's `completion` column when it has one (an imperfect
teacher, a chain of thought) and its `answer` otherwise. The result is written
atomically as a plain Hugging Face folder: users who bring a pretrained checkpoint
skip this stage.

`pretrain.thought_tokens_max > 0` appends between 0 and that many thought tokens to each
prompt, so the as-is model has read thought positions before latent mode switches on;
with the gate closed at switch-on, latent RL then starts from a model that already
answers after a run of thought tokens. `pretrain.elided_steps` trains the formats of the
RL curriculum instead (neuralese.curriculum): the first s written steps of a chain of thought
dropped for c * s thought tokens, so that at stage s the as-is model writes the rest.
`pretrain.objective: mixtures` trains CoT2's continuous supervision instead of the text
(neuralese.mixtures): the teacher's mixture of embeddings at each step, for environments whose
rows say what each step can reach.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path

import datasets
import torch
from transformers import TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from neuralese.codec.dense import DenseTokenizer, compose_code_embeddings, fix_code_embeddings, pretokenize
from neuralese.config import RunConfig, validate
from neuralese.console import Console, parameter_line
from neuralese.envs import env_texts, load_split, make_env
from neuralese.errors import ConfigError
from neuralese.evaluate import evaluate_task, run_task, task_record
from neuralese.io import atomic_dir, check_output_dir, check_replaceable, write_json
from neuralese.load import PRETRAIN_LOG
from neuralese.mixtures import MixtureTrainer, collate, mixture_rows, reachable_texts, reading_config
from neuralese.models import load_model
from neuralese.policy import NeuralesePolicy, render_prompt
from neuralese.preflight import READ_IN_STAGE0, check_tokens, size_warning
from neuralese.tiny import THOUGHT, build_tiny_model, build_tokenizer, check_boundaries, piece_pattern


def sft_dataset(
    train: datasets.Dataset,
    tokenizer,
    thought_tokens_max: int,
    seed: int,
    elide: tuple[int, int] | None = None,
) -> datasets.Dataset:
    """prompt/completion text pairs for SFTTrainer (prompts rendered, optional thought tokens).

    elide: (stages S, thoughts per step c): each example drops its first s written steps, s uniform
    in 0..S, for c * s thought tokens after the prompt (the formats of the RL curriculum).
    """
    rng = random.Random(seed)
    targets = train["completion"] if "completion" in train.column_names else train["answer"]
    if elide is not None:
        steps_of = written_steps(train)
    prompts, completions = [], []
    for i, (prompt, target) in enumerate(zip(train["prompt"], targets)):
        text, target = render_prompt(tokenizer, prompt), str(target)
        if elide is not None:
            stages, per_step = elide
            s = rng.randint(0, stages)
            steps = steps_of[i]
            written = "".join(steps[:s])
            text += THOUGHT * (per_step * s)
            target = target[len(written) :]
        elif thought_tokens_max:
            text += THOUGHT * rng.randint(0, thought_tokens_max)
        prompts.append(text)
        completions.append(target)
    return datasets.Dataset.from_dict({"prompt": prompts, "completion": completions})


def written_steps(train: datasets.Dataset) -> list[list[str]]:
    """Each row's `written_steps`, checked: pieces that the row's `completion` begins with, in order."""
    if "written_steps" not in train.column_names or "completion" not in train.column_names:
        raise ConfigError(
            "pretrain.elided_steps needs an environment whose train split has `completion` (a written chain: "
            "its `cot` option) and `written_steps` columns; it has " + ", ".join(train.column_names)
        )
    out = []
    for i, (steps, completion) in enumerate(zip(train["written_steps"], train["completion"])):
        if not isinstance(steps, list) or not str(completion).startswith("".join(map(str, steps))):
            raise ConfigError(
                f"train row {i}: written_steps {steps!r} is not a list of pieces that completion "
                f"{completion!r} begins with"
            )
        out.append([str(x) for x in steps])
    if not any(out):
        raise ConfigError(
            "pretrain.elided_steps: no train row has written steps to drop (written_steps is empty everywhere); "
            "turn on the environment's chain of thought (env.args.cot: true)"
        )
    return out


def pretrain(cfg: RunConfig, overwrite: bool = False, console: Console | None = None) -> Path:
    """Run stage 0 and return the folder of the as-is model; a folder that holds one already is
    replaced only with `overwrite`. Ends with the as-is model's greedy accuracy on the test split."""
    validate(cfg)  # a config built in Python gets the recipe's checks
    console = console or Console("neuralese pretrain")
    out = stage0_folder(cfg, overwrite)
    set_seed(cfg.seed)
    env = make_env(cfg.env.name, cfg.env.args)
    train = load_split(env, "train", cfg.env.train_size, cfg.seed, cfg.env.name)
    warning = size_warning(
        train, cfg.env.train_size, f"env {cfg.env.name!r}: dataset('train')", "env.train_size"
    )
    if warning:
        console.notice(f"warning: {warning}")
    if cfg.model.tiny is not None:
        test = load_split(env, cfg.env.test_split, cfg.env.test_size, cfg.seed, cfg.env.name)
        if cfg.model.codec is not None:  # a dense-token model: its vocabulary is the codec's codes
            tokenizer = DenseTokenizer.of_codec(cfg.model.codec, key="model.codec")
        else:
            target = "completion" if "completion" in train.column_names else "answer"  # what stage 0 learns
            pattern = piece_pattern(cfg.model.tiny)
            check_boundaries(
                train["prompt"][:2000], train[target][:2000], f"env {cfg.env.name!r}, train split", pattern
            )
            texts = env_texts(train) + env_texts(test)
            if cfg.pretrain.objective == "mixtures":  # every value a mixture weighs is one token
                texts += reachable_texts(train) + reachable_texts(test)
            tokenizer = build_tokenizer(texts, pattern=pattern)
        model = build_tiny_model(tokenizer, cfg.model.tiny, seed=cfg.seed)
        if cfg.model.codec_embedding == "composed":
            compose_code_embeddings(model, tokenizer, seed=cfg.seed)
    else:
        model, tokenizer = load_model(cfg.model.path, cfg.model)
        check_tokens(train, tokenizer, f"env {cfg.env.name!r}, train split", cfg.model.path, READ_IN_STAGE0)
    console.notice(f"{parameter_line(model)}, {cfg.pretrain.max_steps} steps, into {out}")
    with atomic_dir(out) as tmp:
        model, history = fit(cfg, model, tokenizer, train, tmp / "trainer", console)
        fix_code_embeddings(model)  # composed code rows (model.codec_embedding) written into the plain table
        evaluation = as_is_evaluation(cfg, env, model, tokenizer, console)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        log = {"phases": history, "log_history": history[-1]["log_history"], "evaluation": evaluation}
        write_json(tmp / PRETRAIN_LOG, {**log, "task": task_record(run_task(cfg))})
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    return out


def stage0_folder(cfg: RunConfig, overwrite: bool) -> Path:
    """The as-is model's folder, checked before any work: not the model it fine-tunes, not someone's
    files, and not an earlier as-is model unless `overwrite`."""
    what = "the as-is model folder (pretrain.output_dir, --out, or model.path)"
    out = check_output_dir(cfg.pretrain.output_dir or cfg.model.path or Path(cfg.output_dir) / "as-is", what)
    check_replaceable(out, what, "config.json")
    if cfg.model.tiny is None and cfg.model.path and out.resolve() == Path(cfg.model.path).resolve():
        raise ConfigError(
            f"pretrain.output_dir ({out}) must differ from model.path when fine-tuning an existing model"
        )
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"{what} {str(out)!r} already holds a model (config.json), and runs built on it would see it "
            "change; pass --overwrite to replace it, or --out for a new folder"
        )
    return out


def fit(cfg: RunConfig, model, tokenizer, train: datasets.Dataset, folder: Path, console: Console):
    """TRL's SFTTrainer over stage 0's phases (plain targets, then thought-token formats when asked for),
    one progress bar over all of them; the trained model and each phase's log history."""
    cur, p = cfg.curriculum, cfg.pretrain
    if p.objective == "mixtures":
        return fit_mixtures(cfg, model, tokenizer, train, folder, console)
    elide = (cur.stages, cur.thoughts_per_step) if p.elided_steps else None
    formats = bool(elide or p.thought_tokens_max)
    plain_steps = round(p.max_steps * p.plain_fraction) if formats else p.max_steps
    phases = [
        (plain_steps, sft_dataset(train, tokenizer, 0, cfg.seed)),
        (p.max_steps - plain_steps, sft_dataset(train, tokenizer, p.thought_tokens_max, cfg.seed, elide)),
    ]
    history = []
    with console.progress(p.max_steps, 0, "stage 0", "step") as bar:
        for i, (steps, data) in enumerate(phases):
            if steps == 0:
                continue
            if isinstance(tokenizer, DenseTokenizer):
                data = pretokenize(data, tokenizer)
            args = sft_args(cfg, steps, folder)
            trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
            BarCallback.attach(trainer, bar)
            trainer.train()
            model = trainer.model
            phase = ["plain target", "thought-token formats"][i]
            history.append({"phase": phase, "steps": steps, "log_history": trainer.state.log_history})
    return model, history


def fit_mixtures(cfg: RunConfig, model, tokenizer, train: datasets.Dataset, folder: Path, console: Console):
    """Stage 0 on the teacher's mixtures (neuralese.mixtures), one phase: the model and its log history."""
    data = mixture_rows(train, tokenizer, f"env {cfg.env.name!r}, train split")
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    args = TrainingArguments(**stage0_args(cfg, cfg.pretrain.max_steps, folder), remove_unused_columns=False)
    trainer = MixtureTrainer(
        model=model, args=args, train_dataset=data, data_collator=lambda f: collate(f, vocab, pad)
    )
    with console.progress(cfg.pretrain.max_steps, 0, "stage 0 (mixtures)", "step") as bar:
        BarCallback.attach(trainer, bar)
        trainer.train()
    phase = {
        "phase": "teacher mixtures",
        "steps": cfg.pretrain.max_steps,
        "log_history": trainer.state.log_history,
    }
    return trainer.model, [phase]


class BarCallback(TrainerCallback):
    """Stage 0's progress bar: one tick per optimizer step, the loss and learning rate as they are logged."""

    def __init__(self, bar):
        self.bar = bar

    @classmethod
    def attach(cls, trainer, bar) -> None:
        """The bar in place of the Trainer's own printing (raw dicts, a second bar)."""
        for quiet in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(quiet)
        trainer.add_callback(cls(bar))

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        shown = {
            k: f"{logs[k]:.4g}" for k in ("loss", "learning_rate") if isinstance((logs or {}).get(k), float)
        }
        if shown:
            self.bar.set_postfix(shown, refresh=False)


def as_is_evaluation(cfg: RunConfig, env, model, tokenizer, console: Console) -> dict:
    """The as-is model's greedy accuracy on the test problems `neuralese train` evaluates on (the `eval`
    section's problems and answer budget, `data_seed`), printed: what RL starts from. Feedback is off,
    except that a model trained on mixtures reads its own soft thoughts, as it was taught to."""
    # A model trained on mixtures is scored reading its own soft thoughts where it was fed the teacher's.
    mixtures = cfg.pretrain.objective == "mixtures"
    thoughts = reading_config(cfg.neuralese.num_thoughts) if mixtures else None
    reading = f", reading {cfg.neuralese.num_thoughts} soft thoughts" if mixtures else ""
    policy = NeuralesePolicy(model, tokenizer, thoughts).eval()
    task = run_task(cfg, sampled=False)  # greedy: pass@k is the run's step-0 evaluation
    with torch.no_grad():
        result = evaluate_task(policy, env, task, progress=False)
    model.train()
    console.notice(
        f"as-is greedy accuracy {result['accuracy']} on {result['n']} {task.split} problems "
        f"(max_new_tokens {task.eval.max_new_tokens}{reading})"
    )
    return result


def sft_args(cfg: RunConfig, steps: int, folder: Path) -> SFTConfig:
    """TRL's SFT settings for `steps` steps of stage 0: completion-only loss, no saving on the way."""
    return SFTConfig(**stage0_args(cfg, steps, folder), completion_only_loss=True, max_length=None)


def stage0_args(cfg: RunConfig, steps: int, folder: Path) -> dict:
    """The Trainer settings every stage-0 objective shares: `pretrain`'s schedule, no saving on the way."""
    p = cfg.pretrain
    # transformers >= 5 names it activation_checkpointing (gradient_checkpointing is its deprecated alias).
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    )
    return dict(
        **{checkpointing: p.activation_checkpointing},
        output_dir=str(folder),
        max_steps=steps,
        per_device_train_batch_size=p.batch_size,
        learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler,
        warmup_steps=min(p.warmup_steps, steps),
        weight_decay=p.weight_decay,
        logging_steps=max(1, steps // 20),
        disable_tqdm=True,  # stage 0's own bar (BarCallback) counts all phases
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=cfg.model.dtype == "bfloat16",
        dataloader_num_workers=0,
    )
