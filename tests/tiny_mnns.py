"""The tiny model the MNNS tests share: CoT2's GPT-2 shape (2 layers, 2 heads) at width 16, on a
tokenizer made from the rows with number pieces (one token per signed value)."""

from __future__ import annotations

from neuralese.config import NeuraleseConfig, TinyModelConfig
from neuralese.envs import env_texts
from neuralese.policy import NeuralesePolicy
from neuralese.tiny import NUMBER_PATTERN, build_tiny_model, build_tokenizer

SHAPE = TinyModelConfig(
    arch="gpt2", hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_positions=16
)


def mnns_model(rows, seed: int = 0):
    """(tokenizer, model) for MNNS `rows`, built fresh (not trained)."""
    tok = build_tokenizer(env_texts(rows), pattern=NUMBER_PATTERN)
    return tok, build_tiny_model(tok, SHAPE, seed=seed)


def mnns_policy(rows, seed: int = 1, **thoughts) -> NeuralesePolicy:
    """Three soft thoughts (embedding space, `latent_only`) on `mnns_model`, in eval mode; `thoughts`
    overrides NeuraleseConfig fields."""
    tok, model = mnns_model(rows, seed)
    nz = NeuraleseConfig(
        **{
            "mode": "latent",
            "space": "embedding",
            "input": "latent_only",
            "projection": "identity",
            "num_thoughts": 3,
            **thoughts,
        }
    )
    return NeuralesePolicy(model, tok, nz).eval()
