"""What the speed benchmarks share: the tiny model they time (its flags and its folder) and how they
report (the machine and settings, then every number, printed and optionally written as JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from neuralese.config import TinyModelConfig
from neuralese.envs import env_texts, make_env
from neuralese.tiny import save_untrained

ENV_ARGS = {"digits": 4}  # 4+4-digit addition: the task every speed benchmark's prompts come from


def model_flags(p: argparse.ArgumentParser) -> None:
    """--device and the tiny model's shape (--hidden, --layers, --heads)."""
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)


def tiny_model(args: argparse.Namespace, path: Path, max_positions: int) -> Path:
    """An untrained tiny Llama of the flags' shape with the addition task's tokenizer, saved to `path`."""
    texts = env_texts(make_env("addition", ENV_ARGS).dataset("train", 500, seed=0))
    shape = TinyModelConfig(
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        intermediate_size=4 * args.hidden,
        max_positions=max_positions,
    )
    return save_untrained(texts, shape, path)


def header(args: argparse.Namespace) -> dict:
    """The machine a benchmark ran on and its settings: the first entries of its results."""
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    return {"device": device, "threads": torch.get_num_threads(), **vars(args)}


def report(results: dict, width: int, json_path: str | None) -> None:
    """Every result on its own line, names right-aligned to `width`; also to `json_path` when given."""
    for key, value in results.items():
        print(f"{key:>{width}}: {value:.3f}" if isinstance(value, float) else f"{key:>{width}}: {value}")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
