"""The text a codec trains on and is measured on, cut into chunks of one code each.

A row of an environment gives two texts, its prompt and its stage-0 target (`completion`, else
`answer`): the two pieces a dense-token policy encodes separately (neuralese.codec.dense), so the codec
sees chunks aligned the way it will be used. Each text is tokenized and padded with the pad token
to a multiple of the tokens one code holds; its chunks are rows of one [chunks, N] tensor.

Here a piece outside the vocabulary becomes the unknown token and is counted (`unknown_share` in
the report): a level-2 codec or a measurement on other text meets words its tokenizer never saw.
User-facing encoding (`neuralese codec encode`, the dense tokenizer) refuses such a piece instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch

from neuralese.config import RunConfig
from neuralese.envs import load_split, make_env
from neuralese.errors import ConfigError
from neuralese.io import read_jsonl, read_text


@dataclass
class Texts:
    """Texts to train on and texts held out, and where they come from."""

    train: list[str]
    held_out: list[str]
    source: str


def row_texts(ds: datasets.Dataset) -> list[str]:
    """The prompt and the stage-0 target of every row (a conversation's message contents)."""
    target = "completion" if "completion" in ds.column_names else "answer"
    texts = []
    for prompt, answer in zip(ds["prompt"], ds[target]):
        texts += [m["content"] for m in prompt] if isinstance(prompt, list) else [str(prompt)]
        texts.append(str(answer))
    return texts


def load_texts(cfg: RunConfig, source: str = "codec.text") -> Texts:
    """The texts `codec.text` names (neuralese.config.codec documents the three kinds)."""
    c = cfg.codec
    rows_train, rows_held = math.ceil(c.train_texts / 2), math.ceil(c.eval_texts / 2)
    if c.text in ("gsm8k", "env"):
        name, args, split = (
            ("gsm8k", {}, "test") if c.text == "gsm8k" else (cfg.env.name, cfg.env.args, cfg.env.test_split)
        )
        env = make_env(name, args)
        train = row_texts(load_split(env, "train", rows_train, cfg.seed, name))[: c.train_texts]
        held = row_texts(load_split(env, split, rows_held, cfg.seed, name))[: c.eval_texts]
        return Texts(train, held, f"env {name!r} {args or ''}: train and {split} splits".replace("  ", " "))
    texts = file_texts(Path(c.text), source)
    if len(texts) < 2:
        raise ConfigError(
            f"{source} {c.text!r}: has {len(texts)} texts; at least 2 are needed (one to hold out)"
        )
    held = min(c.eval_texts, len(texts) // 2)
    return Texts(
        texts[:-held][: c.train_texts], texts[-held:], f"file {c.text!r} (the last {held} texts held out)"
    )


def file_texts(path: Path, source: str) -> list[str]:
    """One text per non-empty line, or the `text` field of each JSON Lines row."""
    what = f"text file {source} names"
    if path.suffix == ".jsonl":
        rows = read_jsonl(path, what, ConfigError, where=f"{source} {str(path)!r}")
        for lineno, row in rows:
            if not isinstance(row.get("text"), str):
                raise ConfigError(
                    f"{source} {str(path)!r} line {lineno}: expected a 'text' field holding a string"
                )
        return [row["text"] for _, row in rows]
    return [line for line in read_text(path, what, ConfigError).splitlines() if line.strip()]


def chunk_texts(texts: list[str], tokenizer, tokens_per_code: int) -> tuple[torch.Tensor, dict]:
    """[chunks, N] token ids of every text, each padded to whole chunks; and counts for the report."""
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    pad, unk = tokenizer.pad_token_id, tokenizer.unk_token_id
    rows = [ids + [pad] * (-len(ids) % tokens_per_code) for ids in enc]
    flat = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    tokens = sum(len(ids) for ids in enc)
    unknown = sum(ids.count(unk) for ids in enc)
    stats = {"texts": len(texts), "tokens": tokens, "unknown_share": round(unknown / max(1, tokens), 5)}
    return flat.view(-1, tokens_per_code), stats
