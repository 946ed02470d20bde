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
answers after a run of thought tokens.
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

from envs import env_texts, load_split, make_env
from rl.config import RunConfig, validate
from rl.errors import ConfigError
from rl.io import atomic_dir, check_output_dir, write_json
from rl.models import load_model
from rl.policy import render_prompt
from rl.tiny import THOUGHT, build_tiny_model, build_tokenizer


def sft_dataset(train: datasets.Dataset, tokenizer, thought_tokens_max: int, seed: int) -> datasets.Dataset:
    """prompt/completion text pairs for SFTTrainer (prompts rendered, optional thought tokens)."""
    rng = random.Random(seed)
    targets = train["completion"] if "completion" in train.column_names else train["answer"]
    prompts = []
    for prompt in train["prompt"]:
        text = render_prompt(tokenizer, prompt)
        if thought_tokens_max:
            text += THOUGHT * rng.randint(0, thought_tokens_max)
        prompts.append(text)
    return datasets.Dataset.from_dict({"prompt": prompts, "completion": [str(t) for t in targets]})


def pretrain(cfg: RunConfig) -> Path:
    """Run stage 0 and return the folder of the as-is model."""
    validate(cfg)  # a config built in Python gets the recipe's checks
    out = check_output_dir(
        cfg.pretrain.output_dir or cfg.model.path or Path(cfg.output_dir) / "as-is",
        "the as-is model folder (pretrain.output_dir, --out, or model.path)",
    )
    set_seed(cfg.seed)
    env = make_env(cfg.env.name, cfg.env.args)
    train = load_split(env, "train", cfg.env.train_size, cfg.seed, cfg.env.name)
    if cfg.model.tiny is not None:
        test = load_split(env, cfg.env.test_split, cfg.env.test_size, cfg.seed, cfg.env.name)
        tokenizer = build_tokenizer(env_texts(train) + env_texts(test))
        model = build_tiny_model(tokenizer, cfg.model.tiny, seed=cfg.seed)
    else:
        model, tokenizer = load_model(cfg.model.path, cfg.model)
        if out.resolve() == Path(cfg.model.path).resolve():
            raise ConfigError(
                f"pretrain.output_dir ({out}) must differ from model.path when fine-tuning an existing model"
            )
    data = sft_dataset(train, tokenizer, cfg.pretrain.thought_tokens_max, cfg.seed)
    p = cfg.pretrain
    # transformers >= 5 names it activation_checkpointing (gradient_checkpointing is its deprecated alias).
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    )
    with atomic_dir(out) as tmp:
        args = SFTConfig(
            **{checkpointing: p.activation_checkpointing},
            output_dir=str(tmp / "trainer"),
            max_steps=p.max_steps,
            per_device_train_batch_size=p.batch_size,
            learning_rate=p.learning_rate,
            lr_scheduler_type=p.lr_scheduler,
            warmup_steps=p.warmup_steps,
            weight_decay=p.weight_decay,
            logging_steps=max(1, p.max_steps // 20),
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
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        trainer.train()
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "pretrain_log.json", {"log_history": trainer.state.log_history})
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    return out
