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

A mode also declares what it can do, so that nothing outside this package asks for it by name:
`feeds_back` (mode `off` does not), `prefix_thoughts` (thoughts first, then a plain written answer:
what vLLM decodes after and cross-model thinking fills), `thoughts_first` (the curriculum sets how
many thoughts come before the answer) and `window_limit` (what a TBPTT window counts); `check`
holds a run's config to them.
"""

from __future__ import annotations

import torch
from torch import nn

from neuralese.config import NeuraleseConfig, RunConfig
from neuralese.errors import ConfigError
from neuralese.modes import sequential
from neuralese.recompute import Recomputed, Window, live_edges
from neuralese.rollout import Rollout, Sampling


class ThoughtMode:
    """Mode `off`, and the defaults every mode starts from."""

    name = "off"
    feeds_back = False  # thoughts are fed back at all (every mode but `off`)
    uses_thought_token = False  # latent-style thought positions need the reserved thought token
    feeds_answer = False  # a thought is also fed beside every written token
    parallel_tail = False  # positions after the last live block are recomputed in one parallel pass
    # Thoughts are K positions filled one at a time before a plain written answer (latent mode): what
    # vLLM can decode after, and what cross-model thinking fills from another model.
    prefix_thoughts = False

    def __init__(self, cfg: NeuraleseConfig):
        self.cfg = cfg

    # ------------------------------------------------------------------ what the mode can do

    @property
    def thoughts_first(self) -> bool:
        """Thought positions come before the answer, as many as `num_thoughts` (the curriculum sets it)."""
        return False

    def window_limit(self) -> tuple[str, int, str] | None:
        """(key, value, what it counts) bounding an integer TBPTT window, or None when any window fits."""
        return None

    def live_edges(self, window: Window) -> int:
        """How many of the mode's chained edges (thoughts, or passes) a window keeps live."""
        limit = self.window_limit()
        return live_edges(window, limit[1] if limit else 0)

    def check(self, cfg: RunConfig, source: str) -> None:
        """A ConfigError naming the key unless the run's config fits what this mode can do."""
        nz, stages = cfg.neuralese, cfg.curriculum.stages
        where = f"in {self.describe_config()}"

        def need(ok: bool, key: str, what: str, value):
            if not ok:
                raise ConfigError(f"{source}: key '{key}' must be {what}, got {value!r}")

        if cfg.rl.rollout_engine == "vllm":
            need(
                not self.feeds_back or self.prefix_thoughts,
                "rl.rollout_engine",
                f"'hf' {where} (vLLM decodes after latent thoughts only: feedback at written tokens and "
                "parallel passes are beyond its decoding)",
                "vllm",
            )
        if self.thoughts_first and stages == 0:
            need(nz.num_thoughts >= 1, "neuralese.num_thoughts", f">= 1 {where}", nz.num_thoughts)
        limit = self.window_limit()
        # With a curriculum the number of thoughts changes between stages; a window larger than a stage's
        # thoughts keeps all of them live.
        if (
            isinstance(nz.tbptt_window, int)
            and limit is not None
            and not (stages > 0 and limit[0] == "neuralese.num_thoughts")
        ):
            key, value, counts = limit
            need(
                nz.tbptt_window <= value,
                "neuralese.tbptt_window",
                f"<= {key} ({value}) {where}{counts}, or 'full'",
                nz.tbptt_window,
            )
        if stages > 0:
            need(
                self.thoughts_first,
                "curriculum.stages",
                f"0 {where}: the curriculum sets the thoughts before the answer, which this mode has not "
                "(latent mode, or refine mode over thoughts, has them)",
                stages,
            )

    def describe_config(self) -> str:
        """The mode as a message names it ("latent mode")."""
        return f"{self.name} mode"

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

    def rollout(
        self, policy, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, sampling: Sampling
    ) -> Rollout:
        """A `Rollout` of the left-padded prompts [B, P] (`NeuralesePolicy.rollout` documents it)."""
        return sequential.rollout(self, policy, prompt_ids, prompt_mask, sampling)

    def recompute(
        self, policy, ro: Rollout, window: Window, probe=None, need_hidden: bool = False
    ) -> Recomputed:
        """`Recomputed` log-probs of `ro` (`NeuralesePolicy.recompute` documents the arguments)."""
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


def blocks_of(prompt_length: int, length: int, window: Window) -> list[tuple[int, int]]:
    """Block TBPTT: the generated positions [prompt_length, length) cut into consecutive blocks of `window`."""
    k = max(1, live_edges(window, length - prompt_length))
    return [(s, min(s + k, length)) for s in range(prompt_length, length, k)]
