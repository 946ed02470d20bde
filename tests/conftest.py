"""Shared fixtures: tiny real models and tokenizers built from task data, saved and reloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from runs import PLUGINS

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread: tiny models gain nothing from more, and a busy machine loses a lot to oversubscription.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny Llama saved as a Hugging Face folder, tokenizer built from addition problems."""
    from neuralese.config import TinyModelConfig
    from neuralese.envs import env_texts, make_env
    from neuralese.tiny import build_tiny_model, build_tokenizer, save_tiny

    env = make_env("addition", {"digits": 3})
    tok = build_tokenizer(env_texts(env.dataset("train", 200, seed=0)))
    model = build_tiny_model(
        tok, TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    )
    return save_tiny(model, tok, tmp_path_factory.mktemp("tiny") / "model")


CODEC_RECIPE = """\
seed: 0
env: {name: addition, args: {digits: 2}}
codec:
  text: env
  chunk_tokens: 2
  fsq_levels: [8, 5, 5, 5]
  width: 128
  blocks: 1
  embedding_size: 16
  max_steps: 600
  batch_size: 128
  learning_rate: 5.0e-3
  warmup_steps: 10
  train_texts: 2000
  eval_texts: 200
"""


@pytest.fixture(scope="session")
def codec_recipe(tmp_path_factory) -> Path:
    """A recipe whose codec section trains a small FSQ codec (2 tokens per code) on 2-digit addition."""
    path = tmp_path_factory.mktemp("codec-recipe") / "codec.yaml"
    path.write_text(CODEC_RECIPE)
    return path


@pytest.fixture(scope="session")
def addition_codec(codec_recipe, tmp_path_factory) -> Path:
    """That codec, trained through the real CLI (about 3 s): it writes 2-digit addition back exactly."""
    from neuralese.cli import main

    out = tmp_path_factory.mktemp("codec") / "level1"
    assert main(["codec", "train", str(codec_recipe), "--out", str(out)]) == 0
    return out


DENSE_SECTIONS = """\
env: {{name: addition, args: {{digits: 2}}, train_size: 256, test_size: 32}}
model:
  path: {model}
  codec: {codec}
  tiny: {{hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64, max_positions: 32}}
pretrain: {{max_steps: 20, batch_size: 16}}
neuralese: {{mode: hybrid, tbptt_window: 2}}
rl: {{steps: 2, prompts_per_step: 4, samples_per_prompt: 4, micro_batch_per_device: 16, learning_rate: 1.0e-3,
      max_new_tokens: 3}}
eval: {{n: 8, max_new_tokens: 3}}
log: {{save_every: 2, completions_every: 1, trackers: []}}
rewards: [{{fn: "{plugins}:digit_share"}}]
"""


@pytest.fixture(scope="session")
def dense_recipe(addition_codec, tmp_path_factory) -> Path:
    """The codec recipe with a dense-token model on that codec: stage 0 (20 steps) and 2 RL steps
    (rewarded by tests/plugins/rewards.py's digit_share, which varies between samples of a weak model)."""
    folder = tmp_path_factory.mktemp("dense")
    text = CODEC_RECIPE.replace("env: {name: addition, args: {digits: 2}}\n", "")
    path = folder / "dense.yaml"
    path.write_text(
        text + DENSE_SECTIONS.format(model=folder / "as-is", codec=addition_codec, plugins=PLUGINS)
    )
    return path


@pytest.fixture(scope="session")
def dense_dir(dense_recipe) -> Path:
    """A dense-token model built by the real stage 0 (`neuralese pretrain` with model.codec; about 5 s)."""
    from neuralese.cli import main

    assert main(["pretrain", str(dense_recipe)]) == 0
    return dense_recipe.parent / "as-is"


@pytest.fixture(scope="session")
def zero3_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama whose MLP matrices (32 x 3200) exceed ZeRO-3's default persistence threshold
    (1e5 values), so ZeRO-3 really partitions them; the gate (32 values) stays whole."""
    from neuralese.config import TinyModelConfig
    from neuralese.envs import env_texts, make_env
    from neuralese.tiny import build_tiny_model, build_tokenizer, save_tiny

    tok = build_tokenizer(env_texts(make_env("addition", {"digits": 3}).dataset("train", 200, seed=0)))
    shape = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=3200)
    return save_tiny(build_tiny_model(tok, shape), tok, tmp_path_factory.mktemp("zero3") / "model")
