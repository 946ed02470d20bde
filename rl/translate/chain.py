"""The thinker's chain in cross-model thinking (neuralese.translate.cross): A's K latent thoughts, sampled and
recomputed under a TBPTT window.

A reads its prompt (Pa positions), then K-1 thought positions: thought f_1 comes from the last prompt
position, f_k (k >= 2) from thought position k-1, whose input is A's thought token combined with
f_{k-1}. f_K is translated but never fed back into A, so A's record has La = Pa + K - 1 positions.
A thinks deterministically: each thought is its vector with no noise.

Recompute with window w: the last w thoughts are live. One parallel pass over A's positions up to the
source of the first live thought, with every recorded thought as a constant input (so the first live
thought starts from a state computed from constants), then the remaining live positions one at a time
over that pass's cache, each fed the live thought before it. Earlier thoughts are the recorded vectors.
When nothing needs a gradient in A (its weights frozen, no probe) the recorded vectors are the values.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from neuralese.models import CACHE
from neuralese.modes.sequential import Decoding
from neuralese.recompute import live_cache, live_edges

THINKER = "thinker."  # the prefix of A's columns in `Rollout.extra` ([B, La, ...] and [B, K, D_A])


@torch.no_grad()
def think(thinker, ids: torch.Tensor, mask: torch.Tensor, num_thoughts: int) -> dict[str, torch.Tensor]:
    """A's chain for its left-padded prompts [B, Pa]: the record's columns, A's ids, mask and position ids
    [B, La] and its thoughts [B, K, D_A] (f_1 .. f_K)."""
    dec = Decoding.start(thinker, ids, mask)
    bsz, device = ids.shape[0], ids.device
    theta = torch.full((bsz, 1), thinker.thought_token_id, device=device)
    alive = torch.ones(bsz, dtype=torch.bool, device=device)
    out = []
    for k in range(num_thoughts):
        f = thinker.adapter.vector(dec.src, thinker.embedding_table, None)  # [B, D_A]
        out.append(f)
        if k < num_thoughts - 1:
            dec.advance(thinker, thinker.adapter.combine(thinker.embed(theta), f[:, None]), alive)
    n = num_thoughts - 1
    steps = torch.arange(n, device=device)
    return {
        f"{THINKER}ids": torch.cat([ids, theta.expand(bsz, n)], dim=1),
        f"{THINKER}mask": torch.cat(
            [mask.long(), torch.ones(bsz, n, dtype=torch.long, device=device)], dim=1
        ),
        f"{THINKER}positions": torch.cat([dec.positions, dec.positions[:, -1:] + 1 + steps], dim=1),
        f"{THINKER}thoughts": torch.stack(out, dim=1),
    }


def thinker_thoughts(
    thinker, ro, num_thoughts: int, window, probe: torch.Tensor | None = None
) -> torch.Tensor:
    """A's thoughts [B, K, D_A] of the rollout `ro`, the last `window` of them live (see the module docstring).

    probe [B, La, D_A]: zeros added to A's source states (index t: the state thought f computed at t is
    read from), whose gradient is the gradient reaching each of A's feedback edges."""
    recorded = ro.extra[f"{THINKER}thoughts"]  # [B, K, D_A]
    k = live_edges(window, num_thoughts)
    wanted = probe is not None or any(p.requires_grad for p in thinker.parameters())
    if k == 0 or not wanted:
        return recorded
    ids, mask, pos = (ro.extra[f"{THINKER}{name}"] for name in ("ids", "mask", "positions"))
    prompt_length = ids.shape[1] - (num_thoughts - 1)
    first = num_thoughts - k  # the first live thought (0-based); its source is at prompt_length + first - 1
    adapter, table = thinker.adapter, thinker.embedding_table
    embeds = thinker.embed(ids)  # [B, La, D_A]
    fed = torch.cat(
        [embeds[:, :prompt_length], adapter.combine(embeds[:, prompt_length:], recorded[:, :-1])], 1
    )
    end = prompt_length + first
    out0 = thinker.model(
        inputs_embeds=fed[:, :end],
        attention_mask=mask[:, :end],
        position_ids=pos[:, :end],
        use_cache=True,
        **{CACHE: DynamicCache(config=thinker.model.config)},
        output_hidden_states=True,
        return_dict=True,
    )
    src = thinker.thought_source(out0, -1, None if probe is None else probe[:, end - 1])
    live = [adapter.vector(src, table, None)]
    with live_cache(thinker, getattr(out0, CACHE), end, mask) as (cache, mask_for):
        for t in range(end, ids.shape[1]):
            x_t = adapter.combine(embeds[:, t], live[-1])  # [B, D_A]
            out = thinker.forward(x_t[:, None], mask_for(t, 1), pos[:, t : t + 1], cache=cache, keep=1)
            src = thinker.thought_source(out, -1, None if probe is None else probe[:, t])
            live.append(adapter.vector(src, table, None))
    return torch.cat([recorded[:, :first], torch.stack(live, dim=1)], dim=1)
