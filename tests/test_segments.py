"""Segment attention: the same numbers as transformers' attention, and a live block whose memory
does not grow with the chain it is cut from."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import neuralese.recompute as recompute_module
from neuralese.config import NeuraleseConfig
from neuralese.policy import NeuralesePolicy
from neuralese.segments import Segments, causal_mask_4d, segment_attention

PROMPTS = ["123+456=", "9+1=", "12+3=", "999+999="]


class Attn(torch.nn.Module):
    """The attributes transformers' attention functions read from their module."""

    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2)])
def test_segment_attention_equals_sdpa(heads, kv_heads):
    g = torch.Generator().manual_seed(0)
    bsz, q_len, prefix, live, dim = 3, 2, 7, 3, 8
    q = torch.randn(bsz, heads, q_len, dim, generator=g)
    k = torch.randn(bsz, kv_heads, prefix + live, dim, generator=g)
    v = torch.randn(bsz, kv_heads, prefix + live, dim, generator=g)
    pad = torch.ones(bsz, prefix + live, dtype=torch.long)
    pad[0, :2] = 0  # left padding
    mask = causal_mask_4d(pad, prefix + live - q_len, q_len)
    ours, _ = segment_attention(
        Attn(heads // kv_heads),
        q,
        Segments((k[:, :, :prefix], k[:, :, prefix:])),
        Segments((v[:, :, :prefix], v[:, :, prefix:])),
        mask,
        scaling=dim**-0.5,
    )
    theirs, _ = sdpa_attention_forward(Attn(heads // kv_heads), q, k, v, mask, scaling=dim**-0.5)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def policy_and_rollout(tiny_dir, mode, num_thoughts, noise=0.0, answer_tokens=6):
    cfg = NeuraleseConfig(mode=mode, num_thoughts=num_thoughts, noise_std=noise)
    policy = NeuralesePolicy.from_pretrained(tiny_dir, config=cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        policy.adapter.gate_logit.normal_(0, 1.0)
    ids, mask = policy.encode(PROMPTS)
    ro = policy.rollout(ids, mask, answer_tokens, 1.0, torch.Generator().manual_seed(0))
    return policy, ro


def grads_of(policy, ro, window):
    policy.zero_grad(set_to_none=True)
    rc = policy.recompute(ro, window)
    (rc.logprobs * torch.linspace(0.5, 1.5, ro.logprobs.shape[1])).sum().backward()
    return rc.logprobs.detach(), {
        n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("mode,window", [("latent", 2), ("latent", "full"), ("hybrid", 3)])
def test_segments_and_concatenating_cache_agree(tiny_dir, mode, window, monkeypatch):
    policy, ro = policy_and_rollout(tiny_dir, mode, 4, noise=0.2)
    lp_seg, g_seg = grads_of(policy, ro, window)
    monkeypatch.setattr(recompute_module, "supports_segments", lambda model: False)
    lp_cat, g_cat = grads_of(policy, ro, window)
    torch.testing.assert_close(lp_seg, lp_cat, atol=1e-5, rtol=0)
    for name in g_cat:
        scale = g_cat[name].abs().max().item()
        torch.testing.assert_close(g_seg[name], g_cat[name], atol=5e-6 * max(scale, 1.0), rtol=1e-4, msg=name)


def saved_bytes(policy, ro, window) -> int:
    """Bytes of the distinct storages autograd saves for the backward of a recompute."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        policy.recompute(ro, window)
    return sum(seen.values())


def chain_memory(tiny_dir, num_thoughts, window) -> int:
    """What a window adds over window 0 at the same chain length (the latent-chain memory)."""
    policy, ro = policy_and_rollout(tiny_dir, "latent", num_thoughts, answer_tokens=4)
    return saved_bytes(policy, ro, window) - saved_bytes(policy, ro, 0)


def chain_growth(tiny_dir, window) -> int:
    """How much the latent-chain memory grows when the chain goes from 4 to 32 thoughts."""
    return chain_memory(tiny_dir, 32, window) - chain_memory(tiny_dir, 4, window)


def test_window_memory_does_not_grow_with_the_chain(tiny_dir, monkeypatch):
    # Exact BPTT keeps every step of the chain; a window of 4 keeps 4 steps whatever the chain
    # length. Its steps attend over a longer prefix, so a little (the attention reads) does grow.
    full, window = chain_growth(tiny_dir, "full"), chain_growth(tiny_dir, 4)
    assert chain_memory(tiny_dir, 4, 4) > 0 and full > 0
    assert window <= 0.05 * full, (window, full)
    # The concatenating cache copies the prefix at every live step: the same window then grows.
    monkeypatch.setattr(recompute_module, "supports_segments", lambda model: False)
    assert chain_growth(tiny_dir, 4) > 0.2 * full
