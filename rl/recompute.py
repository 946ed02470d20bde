"""Recomputing a rollout's log-probabilities with gradient through a truncated latent chain: the
`Recomputed` record and the helpers the modes recompute with (`NeuralesePolicy.recompute` runs it).

A feedback edge is the step f_t -> e_{t+1}. Forward values never depend on the TBPTT
window k; only which edges carry gradient does:

1. One parallel pass with every fed-back vector set to its recorded constant. It gives the
   KV entries of the positions it covers (with gradient to the weights: the shallow path) and the
   logits where no edge is live. With k = 0 this is all there is, over the whole sequence:
   the cheap regime of HRPO and soft-token RL. With live blocks it stops where the last
   block starts (unless a value head needs every hidden state), since what follows is
   recomputed in step 2 anyway.
2. Live blocks: ranges of positions whose inputs are recomputed step by step as
   differentiable functions of the previous hidden state, over the pass-1 KV cache cut
   at the block start. The first edge of a block starts from a pass-1 hidden
   state, whose own input was a constant, so no gradient path crosses more than k edges.
   The thought mode lays the blocks out (neuralese.modes):
   - latent mode: one block, the last k thought positions; the answer positions after
     it are then recomputed in parallel over the block's cache (they read the live KV).
   - hybrid and channel mode: the generated positions cut into blocks of k (block TBPTT);
     a block sees earlier blocks only through pass-1 KV entries (and channel mode's block
     starts from the recorded state).
   - refine mode: the blocks are passes, not positions: the last k passes are live, each
     one parallel forward over the prompt's cache (neuralese.modes.refine).
   Detaching only the fed-back vector would NOT truncate: gradient would still reach
   older feedback through the KV entries of later positions. Cutting the cache and
   starting each block from pass-1 states is what bounds the path.

Sampled thoughts (Gaussian noise, Gumbel-softmax or multiplex weights, neuralese.thoughts) are
actions with an exact log-probability. On a live edge the recorded draw is replayed (f~ =
f(h) + sigma*eps, y = log softmax(z) + g) and the gradient is pathwise, so a reparameterised
draw's density is a constant there; on a constant edge the recorded thought is the action and
its density's score function carries the gradient. Each edge is therefore credited once, and
the log-prob value is the same for every k. Multiplex tokens are discrete: their log-prob is a
score function on every edge.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from neuralese.rollout import Rollout
from neuralese.segments import SegmentCache, causal_mask_4d, segment_attention_on, supports_segments

Window = int | str  # an int >= 0 or "full"


@dataclass
class Recomputed:
    """Recomputed log-probs ([B, L] each, 0 outside their positions)."""

    token_logprobs: torch.Tensor  # [B, L] float32 log-prob of the sampled token at action positions
    thought_logprobs: torch.Tensor  # [B, L] float64 log-prob of the sampled thoughts at feedback positions
    entropy: torch.Tensor  # [B, L] entropy of the token distribution at action positions
    hidden: torch.Tensor | None  # [B, L, D] last hidden state of pass 1 (for a value head), if asked for

    @property
    def logprobs(self) -> torch.Tensor:
        """[B, L] float64: the policy's log-prob per position, token plus thought (the rollout's `logprobs`)."""
        return self.token_logprobs.double() + self.thought_logprobs


def live_edges(window: Window, edges: int) -> int:
    """How many of `edges` consecutive feedback edges a TBPTT window keeps live: all of them for
    `full`, else at most `window`."""
    return edges if window == "full" else min(int(window), edges)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float):
    """Log-prob of `targets` and entropy under softmax(logits / T): [B, T, V], [B, T] -> [B, T], [B, T]."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [B, T, V]
    entropy = -(logp.exp() * logp).sum(-1)  # [B, T]
    return logp.gather(-1, targets[..., None]).squeeze(-1), entropy


def scatter_token_logprobs(ro: Rollout, segments) -> tuple[torch.Tensor, torch.Tensor]:
    """Token log-probs and entropies [B, L] from `segments` of logits: (positions [n], logits [B, n, V])
    pairs, the logits at t scoring the token at t+1; zero outside the action positions."""
    bsz, length = ro.input_ids.shape
    device = ro.input_ids.device
    logprobs = torch.zeros(bsz, length, device=device)
    entropy = torch.zeros(bsz, length, device=device)
    for idx, logits in segments:
        idx, logits = idx[idx < length - 1], logits[:, : (idx < length - 1).sum()]
        if idx.numel() == 0:
            continue
        lp, ent = token_logprobs(logits, ro.input_ids[:, idx + 1], ro.temperature)
        logprobs = logprobs.index_add(1, idx + 1, lp)
        entropy = entropy.index_add(1, idx + 1, ent)
    return torch.where(ro.action_mask, logprobs, 0.0), torch.where(ro.action_mask, entropy, 0.0)


@contextlib.contextmanager
def live_cache(policy, cache, start: int, mask: torch.Tensor):
    """A cache holding pass 1's first `start` positions for a live block, and the attention mask
    for `count` new positions from `first` on: `mask_for(first, count)`. `mask` [B, L] is the padding mask.

    With segment attention (neuralese.segments) the pass-1 keys and values are read in place; otherwise
    a DynamicCache of views, which every step copies whole into its concatenation.
    """
    model = policy.model
    prefix = [(k[:, :, :start], v[:, :, :start]) for k, v, *_ in cache]
    if supports_segments(model):
        with segment_attention_on(model):
            yield SegmentCache(prefix, model.config), lambda first, count: causal_mask_4d(mask, first, count)
        return
    yield (
        DynamicCache(ddp_cache_data=prefix, config=model.config),
        lambda first, count: mask[:, : first + count],
    )
