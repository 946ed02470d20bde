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
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path

import datasets
import torch
from transformers import set_seed
from trl import SFTConfig, SFTTrainer

from neuralese.codec.dense import DenseTokenizer, compose_code_embeddings, fix_code_embeddings, pretokenize
from neuralese.config import RunConfig, validate
from neuralese.envs import env_texts, load_split, make_env
from neuralese.errors import ConfigError
from neuralese.io import atomic_dir, check_output_dir, check_replaceable, write_json
from neuralese.models import load_model
from neuralese.policy import render_prompt
from neuralese.tiny import THOUGHT, build_tiny_model, build_tokenizer, check_boundaries, piece_pattern


def sft_dataset(
    train: datasets.Dataset, tokenizer, thought_tokens_max: int, seed: int, elide: tuple[int, int] | None = None
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
            target = target[len(written):]
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


def pretrain(cfg: RunConfig) -> Path:
    """Run stage 0 and return the folder of the as-is model."""
    validate(cfg)  # a config built in Python gets the recipe's checks
    what = "the as-is model folder (pretrain.output_dir, --out, or model.path)"
    out = check_output_dir(cfg.pretrain.output_dir or cfg.model.path or Path(cfg.output_dir) / "as-is", what)
    check_replaceable(out, what, "config.json")
    set_seed(cfg.seed)
    env = make_env(cfg.env.name, cfg.env.args)
    train = load_split(env, "train", cfg.env.train_size, cfg.seed, cfg.env.name)
    if cfg.model.tiny is not None:
        test = load_split(env, cfg.env.test_split, cfg.env.test_size, cfg.seed, cfg.env.name)
        if cfg.model.codec is not None:  # a dense-token model: its vocabulary is the codec's codes
            tokenizer = DenseTokenizer.of_codec(cfg.model.codec, key="model.codec")
        else:
            target = "completion" if "completion" in train.column_names else "answer"  # what stage 0 learns
            pattern = piece_pattern(cfg.model.tiny)
            check_boundaries(train["prompt"][:2000], train[target][:2000], f"env {cfg.env.name!r}, train split", pattern)
            tokenizer = build_tokenizer(env_texts(train) + env_texts(test), pattern=pattern)
        model = build_tiny_model(tokenizer, cfg.model.tiny, seed=cfg.seed)
        if cfg.model.codec_embedding == "composed":
            compose_code_embeddings(model, tokenizer, seed=cfg.seed)
    else:
        model, tokenizer = load_model(cfg.model.path, cfg.model)
        if out.resolve() == Path(cfg.model.path).resolve():
            raise ConfigError(
                f"pretrain.output_dir ({out}) must differ from model.path when fine-tuning an existing model"
            )
    cur = cfg.curriculum
    elide = (cur.stages, cur.thoughts_per_step) if cfg.pretrain.elided_steps else None
    p = cfg.pretrain
    formats = bool(elide or p.thought_tokens_max)
    plain_steps = round(p.max_steps * p.plain_fraction) if formats else p.max_steps
    phases = [(plain_steps, sft_dataset(train, tokenizer, 0, cfg.seed)),
              (p.max_steps - plain_steps, sft_dataset(train, tokenizer, p.thought_tokens_max, cfg.seed, elide))]
    history = []
    with atomic_dir(out) as tmp:
        for i, (steps, data) in enumerate(phases):
            if steps == 0:
                continue
            if isinstance(tokenizer, DenseTokenizer):
                data = pretokenize(data, tokenizer)
            trainer = SFTTrainer(model=model, args=sft_args(cfg, steps, tmp / "trainer"), train_dataset=data,
                                 processing_class=tokenizer)  # fmt: skip
            trainer.train()
            model = trainer.model
            history.append({"phase": ["plain target", "thought-token formats"][i], "steps": steps,
                            "log_history": trainer.state.log_history})  # fmt: skip
        fix_code_embeddings(model)  # composed code rows (model.codec_embedding) written into the plain table
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "pretrain_log.json", {"phases": history, "log_history": history[-1]["log_history"]})
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    return out


def sft_args(cfg: RunConfig, steps: int, folder: Path) -> SFTConfig:
    """TRL's SFT settings for `steps` steps of stage 0: completion-only loss, no saving on the way."""
    p = cfg.pretrain
    # transformers >= 5 names it activation_checkpointing (gradient_checkpointing is its deprecated alias).
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return SFTConfig(
        **{checkpointing: p.activation_checkpointing},
        output_dir=str(folder),
        max_steps=steps,
        per_device_train_batch_size=p.batch_size,
        learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler,
        warmup_steps=min(p.warmup_steps, steps),
        weight_decay=p.weight_decay,
        logging_steps=max(1, steps // 20),
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=cfg.model.dtype == "bfloat16",
        completion_only_loss=True,
        max_length=None,
        dataloader_num_workers=0,
    )
