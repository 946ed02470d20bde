"""The `codec:` section of a recipe: what `neuralese codec train` builds and what it trains on.

Kept in a file of its own so the codec's fields sit together; `RunConfig.codec` holds it, so the
recipe loader's checks (unknown keys, types, declared ranges: neuralese.ranges) cover it like any
section, and `check_codec` adds the checks a range cannot say (each FSQ level, their product).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from neuralese.errors import ConfigError
from neuralese.ranges import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt


@dataclass
class CodecConfig:
    """A text codec: an encoder from `chunk_tokens` tokens to one dense token and a decoder back (neuralese.codec)."""

    output_dir: str | None = None
    """Where the codec folder is written (`codec.json`, `codec.safetensors`, `tokenizer/`, `report.json`);
    None: `<output_dir>/codec`."""
    text: str = "gsm8k"
    """What it trains on: `gsm8k` (the real files in ../shared/data/gsm8k: questions and worked solutions,
    train.jsonl to train, test.jsonl to measure), `env` (the recipe's environment: its prompts and
    stage-0 targets, train split to train, `env.test_split` to measure), or a path to a text file (one
    text per line, or JSON Lines with a `text` field; its last `eval_texts` texts are held out)."""
    train_texts: PositiveInt = 20000
    """Most texts read for training (GSM8K's train file has 7,473 problems: 14,946 texts)."""
    eval_texts: PositiveInt = 2000
    """Most held-out texts the reconstruction is measured on."""
    base: str | None = None
    """A level-1 codec folder: this codec is then level 2, over that codec's dense tokens (it encodes
    `chunk_tokens` of them, n1 * n2 text tokens, into one; the base is frozen and copied into the folder).
    A level-2 folder makes a level-3 codec the same way."""
    chunk_tokens: PositiveInt = 4
    """n: tokens per dense token (text tokens at level 1, level-1 dense tokens at level 2). Each text
    is padded with the pad token to a multiple of the text tokens one code holds."""
    quantizer: Literal["none", "fsq"] = "fsq"
    """`fsq`: finite scalar quantisation, each code dimension bounded and rounded to `fsq_levels` values
    (a discrete code, the vocabulary the product of the levels). `none`: the same bounded code, not
    rounded (continuous)."""
    fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    """Levels per code dimension (each >= 2); the code vocabulary is their product (Mentzer et al.'s
    choices: [8, 5, 5, 5] for 1,000 codes, [8, 8, 8, 5, 5, 5] for 64,000)."""
    code_width: PositiveInt | None = None
    """`quantizer: none`: dimensions of the continuous code; None takes len(fsq_levels), so the two
    quantizers compare at the same width."""
    embedding_size: PositiveInt = 64
    """Level 1: width of the token embeddings (tied with the decoder's output head)."""
    width: PositiveInt = 512
    """Width of the encoder's and decoder's residual MLP blocks."""
    blocks: PositiveInt = 2
    """Residual MLP blocks in the encoder, and as many in the decoder."""
    max_steps: PositiveInt = 600
    """Optimizer steps."""
    batch_size: PositiveInt = 256
    """Chunks (one code each) per optimizer step."""
    learning_rate: PositiveFloat = 2e-3
    """Peak learning rate (AdamW, cosine schedule)."""
    warmup_steps: NonNegativeInt = 30
    """Linear warm-up steps."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay."""


def check_codec(cfg: CodecConfig, source: str, prefix: str = "codec.") -> None:
    """What a declared range cannot say: each FSQ level is an integer >= 2 (a vocabulary of any size: past 63
    bits a code has no index, and FSQ.index says so where one is asked for)."""
    if not cfg.fsq_levels:
        raise ConfigError(
            f"{source}: key '{prefix}fsq_levels' must be a non-empty list of integers >= 2, got []"
        )
    for i, level in enumerate(cfg.fsq_levels):
        if isinstance(level, bool) or not isinstance(level, int) or level < 2:
            raise ConfigError(
                f"{source}: key '{prefix}fsq_levels[{i}]' must be an integer >= 2, got {level!r}"
            )
