"""Shared fixtures: tiny real models and tokenizers built from task data, saved and reloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread: tiny models gain nothing from more, and a busy machine loses a lot to oversubscription.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny Llama saved as a Hugging Face folder, tokenizer built from addition problems."""
    from envs import env_texts, make_env
    from rl.config import TinyModelConfig
    from rl.tiny import build_tiny_model, build_tokenizer, save_tiny

    env = make_env("addition", {"digits": 3})
    tok = build_tokenizer(env_texts(env.dataset("train", 200, seed=0)))
    model = build_tiny_model(
        tok, TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    )
    return save_tiny(model, tok, tmp_path_factory.mktemp("tiny") / "model")
