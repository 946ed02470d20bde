"""Latent-chain memory: what one recompute of a rollout and its backward cost in memory.

On CUDA, the allocator's peak over the recompute and backward. On CPU (no allocator statistics), the
bytes of the distinct tensors autograd saves for the backward pass, which is what a TBPTT window
changes. The design's latent-chain memory is this at a window minus this at window 0 for the same
rollout; `bench/bench_rollout.py` measures it over chain lengths and `neuralese ablate` per arm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from neuralese.policy import NeuralesePolicy
from neuralese.recompute import Window
from neuralese.rollout import Rollout


def saved_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes of the distinct tensors autograd saves while `fn` builds its graph, and what `fn` returned."""
    seen: dict[tuple, int] = {}

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.device.type)
        seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def recompute_memory(policy: NeuralesePolicy, ro: Rollout, window: Window) -> int:
    """Bytes of one recompute + backward of `ro`: the allocator's peak on CUDA; on CPU the bytes of the
    distinct tensors autograd saves for the backward."""
    if policy.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        policy.recompute(ro, window).logprobs.sum().backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    nbytes, rc = saved_bytes(lambda: policy.recompute(ro, window))
    rc.logprobs.sum().backward()
    return nbytes
