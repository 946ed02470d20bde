"""Log-probabilities of a rollout, recomputed with gradient through a truncated latent chain.

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
   - latent mode: one block, the last k thought positions; the answer positions after
     it are then recomputed in parallel over the block's cache (they read the live KV).
   - hybrid mode: the generated positions cut into blocks of k (block TBPTT); a block
     sees earlier blocks only through pass-1 KV entries.
   Detaching only the fed-back vector would NOT truncate: gradient would still reach
   older feedback through the KV entries of later positions. Cutting the cache and
   starting each block from pass-1 states is what bounds the path.

Sampled thoughts (Gaussian noise, Gumbel-softmax or multiplex weights, rl.thoughts) are
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

from rl.models import CACHE
from rl.policy import NeuralesePolicy
from rl.rollout import Rollout
from rl.segments import SegmentCache, causal_mask_4d, segment_attention_on, supports_segments

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


def live_blocks(
    mode: str, prompt_length: int, length: int, num_thoughts: int, window: Window
) -> list[tuple[int, int]]:
    """Ranges [start, end) of positions recomputed step by step (see the module docstring)."""
    if mode == "off" or window == 0:
        return []
    if mode == "latent":
        k = num_thoughts if window == "full" else min(int(window), num_thoughts)
        end = prompt_length + num_thoughts
        return [(end - k, end)] if k > 0 else []
    generated = length - prompt_length
    k = generated if window == "full" else int(window)
    return [(s, min(s + k, length)) for s in range(prompt_length, length, k)]


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float):
    """Log-prob of `targets` and entropy under softmax(logits / T): [B, T, V], [B, T] -> [B, T], [B, T]."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [B, T, V]
    entropy = -(logp.exp() * logp).sum(-1)  # [B, T]
    return logp.gather(-1, targets[..., None]).squeeze(-1), entropy


@contextlib.contextmanager
def _live_cache(policy: NeuralesePolicy, cache, start: int, mask: torch.Tensor):
    """A cache holding pass 1's first `start` positions for a live block, and the attention mask
    for `count` new positions from `first` on: `mask_for(first, count)`. `mask` [B, L] is the padding mask.

    With segment attention (rl.segments) the pass-1 keys and values are read in place; otherwise
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


def recompute_logprobs(
    policy: NeuralesePolicy,
    ro: Rollout,
    window: Window,
    probe: torch.Tensor | None = None,
    need_hidden: bool = False,
) -> Recomputed:
    """Recompute `ro`'s log-probs with gradient, truncating the latent chain to `window` edges.

    probe: optional [B, L, D] tensor added to the fed-back source state of every position
    (zeros that require grad); its gradient is the gradient reaching each feedback edge.
    """
    bsz, length = ro.input_ids.shape
    fb_on = policy.feedback_on
    adapter = policy.adapter
    mask, pos, fb = ro.attention_mask, ro.position_ids, ro.feedback_mask
    embeds = policy.embed(ro.input_ids)  # [B, L, D]
    x0 = torch.where(fb[..., None], adapter.combine(embeds, ro.feedback), embeds) if fb_on else embeds
    blocks = live_blocks(policy.config.mode if fb_on else "off", ro.prompt_length, length,
                         policy.config.num_thoughts, window)  # fmt: skip
    tail = blocks[-1][1] if blocks and policy.config.mode == "latent" else length

    # Logits at t-1 score the token at t. Which of them come from pass 1?
    need = ro.action_mask[:, 1:].any(0)  # [L-1]
    live = torch.zeros(length - 1, dtype=torch.bool, device=need.device)
    for s, e in blocks:
        live[s:e] = True
    live[tail:] = True
    const_idx = (need & ~live).nonzero().squeeze(-1)  # [n]
    # Pass 1 stops where the last live block starts: what comes after is recomputed over the
    # live cache anyway (unless a value head needs every hidden state).
    end1 = length
    if blocks and not need_hidden:
        end1 = max(blocks[-1][0], int(const_idx.max()) + 1 if const_idx.numel() else 0)

    out0 = policy.model(
        inputs_embeds=x0[:, :end1], attention_mask=mask[:, :end1], position_ids=pos[:, :end1],
        use_cache=bool(blocks), **{CACHE: DynamicCache(config=policy.model.config) if blocks else None},
        output_hidden_states=fb_on or need_hidden, logits_to_keep=const_idx, return_dict=True,
    )  # fmt: skip
    live_fb = torch.zeros_like(fb)
    for s, e in blocks:
        live_fb[:, s:e] = fb[:, s:e]
    const_fb = fb & ~live_fb  # [B, L] feedback positions whose recorded thought is a constant
    sources = _pass1_sources(policy, out0, ro, blocks, const_fb, probe) if fb_on else None
    segments = [(const_idx, out0.logits)]  # (logit positions [n], logits [B, n, V])
    thought_logprobs = torch.zeros(bsz, length, dtype=torch.float64, device=embeds.device)

    for s, e in blocks:
        with _live_cache(policy, getattr(out0, CACHE), s, mask) as (cache, mask_for):
            src, block_logits = sources(s - 1), []
            for t in range(s, e):
                draw = ro.draw[:, t]
                vec = adapter.vector(src, policy.embedding_table, draw)  # [B, D], the recorded draw replayed
                if ro.sampler != "none":
                    dens = adapter.logprob(src, policy.embedding_table, draw, vec, live=True)
                    thought_logprobs[:, t] = torch.where(fb[:, t], dens, 0.0)
                x_t = torch.where(fb[:, t, None], adapter.combine(embeds[:, t], vec), x0[:, t])  # [B, D]
                out = policy.forward(x_t[:, None], mask_for(t, 1), pos[:, t : t + 1], cache=cache, keep=1)
                block_logits.append(out.logits[:, -1])
                src = policy.thought_source(out, -1, None if probe is None else probe[:, t])
            segments.append((torch.arange(s, e, device=need.device), torch.stack(block_logits, dim=1)))
            if (s, e) == blocks[-1] and tail < length - 1:
                out = policy.forward(
                    x0[:, tail:], mask_for(tail, length - tail), pos[:, tail:], cache=cache, keep=0
                )
                segments.append((torch.arange(tail, length, device=need.device), out.logits))

    logprobs = torch.zeros(bsz, length, device=embeds.device)
    entropy = torch.zeros(bsz, length, device=embeds.device)
    for idx, logits in segments:
        idx, logits = idx[idx < length - 1], logits[:, : (idx < length - 1).sum()]
        if idx.numel() == 0:
            continue
        lp, ent = token_logprobs(logits, ro.input_ids[:, idx + 1], ro.temperature)
        logprobs = logprobs.index_add(1, idx + 1, lp)
        entropy = entropy.index_add(1, idx + 1, ent)
    logprobs = torch.where(ro.action_mask, logprobs, 0.0)
    entropy = torch.where(ro.action_mask, entropy, 0.0)
    if fb_on and ro.sampler != "none" and const_fb.any():
        thought_logprobs = thought_logprobs + _constant_densities(policy, ro, sources, const_fb)
    hidden = out0.hidden_states[-1] if need_hidden else None
    return Recomputed(token_logprobs=logprobs, thought_logprobs=thought_logprobs, entropy=entropy, hidden=hidden)


def _pass1_sources(policy, out0, ro: Rollout, blocks, const_fb: torch.Tensor, probe):
    """`sources(p)`: the thought source [B] at position p of pass 1, or at several positions [B, n].

    Computed once, at the positions some thought reads from: the start of each live block, and
    (for sampled thoughts) the positions before constant thoughts, whose density is scored.
    """
    wanted = {s - 1 for s, _ in blocks}
    if ro.sampler != "none":
        wanted |= {int(t) - 1 for t in const_fb.any(0).nonzero().squeeze(-1)}
    idx = torch.tensor(sorted(wanted), dtype=torch.long, device=ro.input_ids.device)
    src = policy.thought_source(out0, idx, None if probe is None else probe[:, idx])
    column = {int(p): i for i, p in enumerate(idx.tolist())}

    def sources(p):
        if isinstance(p, int):
            return src[:, column[p]]
        return src[:, torch.tensor([column[int(q)] for q in p], device=idx.device)]

    return sources


def _constant_densities(policy, ro: Rollout, sources, const_fb: torch.Tensor) -> torch.Tensor:
    """[B, L] float64 log-density of the recorded (constant) thoughts, scored against pass-1 sources.

    Their gradient is the score function: on a constant edge the recorded thought is the action.
    """
    at = const_fb.any(0).nonzero().squeeze(-1)  # [n] positions with a constant thought in some row
    src = sources((at - 1).tolist())  # [B, n]
    dens = policy.adapter.logprob(src, policy.embedding_table, ro.draw[:, at], ro.feedback[:, at], live=False)
    out = torch.zeros(const_fb.shape, dtype=torch.float64, device=const_fb.device)
    return out.index_copy(1, at, torch.where(const_fb[:, at], dens, 0.0))
