"""Attention over a KV cache kept in segments, so truncated BPTT never copies the prefix.

A live block of the recompute (neuralese.recompute) runs position by position over the KV
entries of pass 1, cut at the block start. With transformers' DynamicCache every step
concatenates that prefix with the new entries, and the attention saves the concatenation
for its backward: each live step then stores a copy of the whole prefix, and the memory
of a window of k grows with k times the chain length.

Here the cache hands the attention its segments instead, the pass-1 prefix (a view of
pass-1 tensors, which are kept for the backward anyway) and the live entries, and the
attention scores each segment against the queries without joining them. What a live step
adds for the backward is then its own activations and one row of attention weights per
key, not a copy of every key and value: with window k the extra memory grows with k.

Used for the standard decoder attention of Llama-style models (`supports_segments`); other
models fall back to a cut DynamicCache (correct, only heavier).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache

NAME = "neuralese_segments"


@dataclass
class Segments:
    """Keys or values of one layer as consecutive pieces along the sequence: [B, Hkv, n_i, d] each."""

    parts: tuple[torch.Tensor, ...]


class SegmentCache(DynamicCache):
    """A cache whose `update` returns Segments: the fixed prefix, then everything added since."""

    def __init__(self, prefix: list[tuple[torch.Tensor, torch.Tensor]], config):
        super().__init__(config=config)
        self.prefix = prefix  # per layer (keys, values) [B, Hkv, s, d]
        self.live: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(prefix)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        live = self.live[layer_idx]
        if live is not None:  # the live part stays short (one block): concatenating it is cheap
            key_states = torch.cat([live[0], key_states], dim=-2)
            value_states = torch.cat([live[1], value_states], dim=-2)
        self.live[layer_idx] = (key_states, value_states)
        keys, values = self.prefix[layer_idx]
        return Segments((keys, key_states)), Segments((values, value_states))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        live = self.live[layer_idx]
        return self.prefix[layer_idx][0].shape[-2] + (0 if live is None else live[0].shape[-2])


def segment_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Softmax attention of `query` [B, H, q, d] over key/value Segments; returns [B, q, H, d].

    `attention_mask` is a 4-D boolean mask [B, 1, q, kv] (True: attend), as `causal_mask_4d` builds.
    Grouped-query heads are handled by reshaping the queries, never by repeating keys.
    """
    if not isinstance(key, Segments):  # an ordinary call: a single segment
        key, value = Segments((key,)), Segments((value,))
    bsz, heads, q_len, dim = query.shape
    kv_heads = key.parts[0].shape[1]
    scale = dim**-0.5 if scaling is None else scaling
    q = query.reshape(bsz, kv_heads, heads // kv_heads, q_len, dim)  # [B, Hkv, G, q, d]
    scores = torch.cat([torch.einsum("bhgqd,bhkd->bhgqk", q, k) for k in key.parts], dim=-1) * scale
    mask = attention_mask[:, :, None]  # [B, 1, 1, q, kv]
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)  # [B, Hkv, G, q, kv]
    probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    if dropout and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout)
    out, start = 0, 0
    for v in value.parts:
        out = out + torch.einsum("bhgqk,bhkd->bhgqd", probs[..., start : start + v.shape[-2]], v)
        start += v.shape[-2]
    return out.reshape(bsz, heads, q_len, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, segment_attention)


def causal_mask_4d(attention_mask: torch.Tensor, start: int, q_len: int) -> torch.Tensor:
    """[B, 1, q, start + q] boolean mask for queries at positions start..start+q-1 of a sequence
    whose padding mask is `attention_mask` [B, >= start + q]."""
    kv = start + q_len
    keys = torch.arange(kv, device=attention_mask.device)
    queries = torch.arange(start, kv, device=attention_mask.device)
    causal = keys[None, :] <= queries[:, None]  # [q, kv]
    return causal[None, None] & attention_mask[:, None, None, :kv].bool()


def supports_segments(model) -> bool:
    """Llama-style decoder attention: queries, keys and values handed to the attention interface,
    with no sliding window and no soft-capping."""
    cfg = model.config.get_text_config()
    if getattr(cfg, "model_type", None) not in {"llama", "qwen2", "qwen3", "mistral"}:
        return False
    if getattr(cfg, "attn_logit_softcapping", None):
        return False
    return not (getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True))


@contextlib.contextmanager
def segment_attention_on(model) -> Iterator[None]:
    """Route the model's attention through `segment_attention` for the duration."""
    cfg = model.config
    before = cfg._attn_implementation
    cfg._attn_implementation = NAME
    try:
        yield
    finally:
        cfg._attn_implementation = before
