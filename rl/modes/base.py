"""The interface of a thought mode, and mode `off` (no feedback: the plain language model).

A mode answers three questions; everything else (sampling, the record, log-prob assembly) is
shared:

    where feedback applies   `thought_positions` (K thought positions after the prompt, each a
                             reserved thought token plus its thought) and `feeds_answer` (a thought
                             also beside every written token)
    how a step builds its    `carry(policy, thought, state, fb)`: the vector fed into the next input
    input                    from the thought f(h) just drawn, and any state the mode keeps between
                             positions (by default the thought itself, and no state)
    how the recompute lays   `live_blocks(prompt_length, length, window)`: ranges of positions whose
    out its live blocks      inputs are recomputed step by step under a TBPTT window (neuralese.recompute);
                             `parallel_tail`: positions after the last block are recomputed in one
                             parallel pass over its cache (latent mode's answer)

The sequential engine (neuralese.modes.sequential) turns these answers into `rollout` and `recompute`.
A mode whose positions are not filled one at a time (refine) overrides those two entry points
instead, and keeps the same record and the same consistency and truncation guarantees.
"""

from __future__ import annotations

import torch
from torch import nn

from neuralese.config import NeuraleseConfig
from neuralese.modes import sequential


class ThoughtMode:
    """Mode `off`, and the defaults every mode starts from."""

    uses_thought_token = False  # latent-style thought positions need the reserved thought token
    feeds_answer = False
    parallel_tail = False

    def __init__(self, cfg: NeuraleseConfig):
        self.cfg = cfg

    # ------------------------------------------------------------------ where feedback applies

    @property
    def thought_positions(self) -> int:
        """K: thought positions between the prompt and the answer."""
        return 0

    # ------------------------------------------------------------------ how a step builds its input

    def weights(self, hidden_size: int) -> nn.Module | None:
        """The mode's own trainable weights, held (and saved) by the feedback adapter under the mode's name."""
        return None

    def carry(self, policy, thought: torch.Tensor, state, fb: torch.Tensor):
        """(fed vector [B, D], next state, record columns {name: [B, ...]}) from the thought [B, D] drawn at
        this step; `fb` [B] marks the rows that receive feedback. The thought itself is fed by default."""
        return thought, state, {}

    def entering_state(self, ro, t: int):
        """The recorded state a live block starting at position t begins from (None: the mode has none)."""
        return None

    # ------------------------------------------------------------------ how the recompute lays out live blocks

    def live_blocks(self, prompt_length: int, length: int, window) -> list[tuple[int, int]]:
        return []

    # ------------------------------------------------------------------ entry points

    def rollout(self, policy, prompt_ids, prompt_mask, max_new_tokens, temperature, generator, ignore_eos, thoughts):
        """A `Rollout` (neuralese.rollout.generate_rollout documents the arguments)."""
        return sequential.rollout(self, policy, prompt_ids, prompt_mask, max_new_tokens, temperature,
                                  generator, ignore_eos, thoughts)  # fmt: skip

    def recompute(self, policy, ro, window, probe, need_hidden):
        """`Recomputed` log-probs of `ro` (neuralese.recompute.recompute_logprobs documents the arguments)."""
        return sequential.recompute(self, policy, ro, window, probe, need_hidden)

    def final_tokens(self, ro) -> torch.Tensor:
        """[B, L] the input tokens of the forward pass whose outputs scored the answer."""
        return ro.input_ids

    def final_inputs(self, policy, ro) -> torch.Tensor:
        """[B, L, D] the inputs of the forward pass whose outputs scored the answer (recorded constants)."""
        embeds = policy.embed(self.final_tokens(ro))
        if not policy.feedback_on:
            return embeds
        return torch.where(ro.feedback_mask[..., None], policy.adapter.combine(embeds, ro.feedback), embeds)

    # ------------------------------------------------------------------ inspection

    def inspect_columns(self, policy, ro, positions: torch.Tensor) -> dict[str, list[float | None]]:
        """Extra `neuralese inspect` columns for the thoughts fed into `positions` [n] of row 0."""
        return {}

    def inspect_lenses(self, policy, ro, positions: torch.Tensor) -> dict[str, tuple]:
        """More logit lenses for `neuralese inspect`: {name: (policy whose head reads, states [n, D])} for
        the thoughts fed into `positions` [n] of row 0 (cross-model thinking reads A's and B's)."""
        return {}

    def weight_stats(self, policy) -> dict[str, float]:
        """Numbers about the mode's own weights (channel mode's retention), for `describe` and the ablation."""
        return {}

    def describe(self, policy) -> str:
        """An extra `neuralese inspect` header line about the mode's own weights ('' for none)."""
        return ""


def blocks_of(prompt_length: int, length: int, window) -> list[tuple[int, int]]:
    """Block TBPTT: the generated positions [prompt_length, length) cut into consecutive blocks of `window`."""
    k = length - prompt_length if window == "full" else int(window)
    return [(s, min(s + k, length)) for s in range(prompt_length, length, k)]
