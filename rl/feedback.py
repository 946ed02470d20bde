"""The feedback adapter: from the position before a thought to the vector fed into it.

    f_t     = P(x(src_{t-1})) (+ sigma * eps)        feedback vector
    e_{t+1} = E[x_{t+1}] + tanh(lambda) * f_t        gated next input (`gated_sum`)

`x` is the thought's space (neuralese.thoughts): the hidden state rescaled by `n` to the RMS of
the token embeddings (hidden states are far larger than embeddings, Coconut issue #29, and
an input of the wrong scale would swamp the token part), a mixture of token embeddings
weighted by the next-token distribution, a learned mix of the two, or one learned constant
(`pause`, a control without content). `P` is the identity, a linear map initialised to the
identity, or a residual MLP whose output layer starts at zero. The gate `lambda` starts at
0, so at switch-on the policy is the pretrained model exactly, while d(loss)/d(lambda) =
f_t * d(loss)/d(e) is not zero: the gate can open from the first step.

A sampled thought (Gaussian noise, Gumbel-softmax or multiplex weights) is an action: the
adapter draws it (`sample`), rebuilds it from its recorded draw on a live TBPTT edge
(`vector`), and scores it (`logprob`) with the exact density neuralese.thoughts gives.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from neuralese import thoughts as T
from neuralese.config import NeuraleseConfig
from neuralese.errors import ConfigError
from neuralese.models import embed_scale

RMS_EPS = 1e-6
NO_GATE = "n/a (latent_only: the thought replaces the token embedding, so there is no gate)"
"""What a gate reading says for an adapter without one (`FeedbackAdapter.has_gate`)."""


def rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square over the last dimension, kept for broadcasting."""
    return x.pow(2).mean(-1, keepdim=True).add(RMS_EPS).sqrt()


def _whole(param: nn.Parameter):
    """Context in which `param` holds all its values: a model loaded under DeepSpeed ZeRO-3 keeps
    only this process's partition (every process must enter: gathering is collective)."""
    if not hasattr(param, "ds_id"):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([param])


@dataclass
class Source:
    """What a thought is computed from: the position before it. Leading dims are free ([B], [B, T])."""

    hidden: torch.Tensor | None  # [..., D] float32: the selected hidden state (spaces hidden, mix)
    logits: torch.Tensor | None  # [..., V]: next-token logits (spaces embedding, mix)

    def __getitem__(self, index) -> Source:
        return Source(*(None if t is None else t[index] for t in (self.hidden, self.logits)))


@dataclass
class Draw:
    """The random part of thoughts, as recorded at rollout; None where the sampler has none."""

    noise: torch.Tensor | None = None  # [..., D] standard normal (gaussian) or [..., V] standard Gumbel
    perturbed: torch.Tensor | None = None  # [..., V] gumbel: y = log softmax(z) + g, the action itself
    tokens: torch.Tensor | None = None  # [..., m] long: multiplex tokens

    def __getitem__(self, index) -> Draw:
        return Draw(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                for f in fields(self)
            }
        )

    def map(self, fn) -> Draw:
        """The same record with `fn` applied to each tensor."""
        return replace(
            self,
            **{f.name: fn(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None},
        )


class ResidualMLP(nn.Module):
    """x + W2 gelu(W1 x), with W2 = 0 at init: the identity until trained."""

    def __init__(self, dim: int, expansion: int = 2):
        super().__init__()
        self.up = nn.Linear(dim, expansion * dim)
        self.down = nn.Linear(expansion * dim, dim)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(x)))


class FeedbackAdapter(nn.Module):
    """Feedback source (layer choice or learned mix), space, projection, sampler and gate.

    Parameters are kept in float32 whatever the model's dtype: the gate starts at exactly
    0 and its early gradients are small.
    """

    def __init__(
        self,
        cfg: NeuraleseConfig,
        hidden_size: int,
        num_hidden_states: int,
        embed_rms: float,
        mode_weights: nn.Module | None = None,
    ):
        """`mode_weights`: the thought mode's own trainable weights (channel mode's state maps), held and
        saved here under the mode's name."""
        super().__init__()
        self.cfg = cfg
        self.hidden_size = hidden_size
        self.num_hidden_states = num_hidden_states
        if cfg.layer == "mix":
            # Softmax over every entry of transformers' `hidden_states` except the embedding output.
            self.layer_logits = nn.Parameter(torch.zeros(num_hidden_states - 1))
        elif not -num_hidden_states <= cfg.layer < num_hidden_states:
            raise ConfigError(  # the user's setting, reported as one: not a ValueError's traceback
                f"key 'neuralese.layer' is {cfg.layer}, out of range for this model: it has {num_hidden_states} "
                f"hidden states (indices {-num_hidden_states}..{num_hidden_states - 1}, 0 being the embedding output)"
            )
        if cfg.projection == "identity":
            self.proj: nn.Module = nn.Identity()
        elif cfg.projection == "linear":
            self.proj = nn.Linear(hidden_size, hidden_size)
            with torch.no_grad():
                self.proj.weight.copy_(torch.eye(hidden_size))
                self.proj.bias.zero_()
        else:
            self.proj = ResidualMLP(hidden_size)
        if cfg.space == "mix":  # share of the hidden part, per dimension
            share = cfg.mix_init
            self.mix_logit = nn.Parameter(torch.full((hidden_size,), math.log(share / (1 - share))))
        if cfg.space == "pause":  # set to the thought token's embedding by the policy
            self.pause_vector = nn.Parameter(torch.zeros(hidden_size))
        self.gate_logit = nn.Parameter(torch.zeros(hidden_size))  # lambda
        if mode_weights is not None:
            self.add_module(cfg.mode, mode_weights)
        self.register_buffer("target_rms", torch.tensor(float(embed_rms)))

    @classmethod
    def for_model(cls, cfg: NeuraleseConfig, model: nn.Module, mode=None) -> FeedbackAdapter:
        """An adapter sized for `model`, RMS target taken from its token embeddings (the table, times the
        embedding layer's scale where it has one), with the weights `mode` (a thought mode) asks for."""
        emb = model.get_input_embeddings().weight
        with torch.no_grad(), _whole(emb):
            embed_rms = emb.float().pow(2).mean().sqrt().item() * embed_scale(model)
        text_cfg = model.config.get_text_config()
        own = None if mode is None else mode.weights(text_cfg.hidden_size)
        return cls(cfg, text_cfg.hidden_size, text_cfg.num_hidden_layers + 1, embed_rms, own)

    # ------------------------------------------------------------------ what a thought reads

    @property
    def uses_hidden(self) -> bool:
        # `pause` reads nothing from it, but its shape gives the thought's leading dimensions.
        return self.cfg.space in ("hidden", "mix", "pause")

    @property
    def uses_logits(self) -> bool:
        return self.cfg.space in ("embedding", "mix")

    @property
    def sampler(self) -> str:
        """`none`, `gaussian`, `gumbel` or `multiplex`: what makes a thought random."""
        if self.cfg.noise_std > 0:
            return "gaussian"
        if self.uses_logits and self.cfg.embedding_weights != "softmax":
            return self.cfg.embedding_weights
        return "none"

    def select(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The hidden state that is fed back: one entry of `hidden_states`, or the learned mix.

        hidden_states: n_layers + 1 tensors [B, T, D] -> [B, T, D] (float32)
        """
        if self.cfg.layer != "mix":
            return hidden_states[self.cfg.layer].float()
        weights = torch.softmax(self.layer_logits, dim=0)  # [n_layers]
        # Mix RMS-normalised states: raw layer norms differ by orders of magnitude.
        stacked = torch.stack(
            [h.float() / rms(h.float()) for h in hidden_states[1:]], dim=0
        )  # [n_layers, B, T, D]
        return torch.einsum("l,lbtd->btd", weights, stacked)

    # ------------------------------------------------------------------ the thought vector

    def vector(self, src: Source, embed: torch.Tensor, draw: Draw | None = None) -> torch.Tensor:
        """f = P(x(src)) (+ sigma * eps): [...] sources -> [..., D] float32, from a recorded `draw`
        (None: the deterministic part, the mean of a Gaussian thought). `embed` [V, D] is E."""
        cfg = self.cfg
        if cfg.space == "pause":
            f = self.pause_vector.expand(*_lead(src), self.hidden_size)
        else:
            parts = {}
            if self.uses_hidden:
                h = src.hidden.float()
                parts["hidden"] = h / rms(h) * self.target_rms
            if self.uses_logits:
                parts["embedding"] = self.weights(src.logits, draw) @ embed.float()  # [..., D]
            if cfg.space == "mix":
                share = torch.sigmoid(self.mix_logit)
                x = (1 - share) * parts["embedding"] + share * parts["hidden"]
            else:
                x = parts[cfg.space]
            f = self.proj(x)
        if self.sampler == "gaussian" and draw is not None:
            f = f + cfg.noise_std * draw.noise
        return f

    def weights(self, logits: torch.Tensor, draw: Draw | None) -> torch.Tensor:
        """Weights over the vocabulary of the embedding part: [..., V] -> [..., V] float32."""
        tau = self.cfg.thought_temperature
        if self.sampler == "gumbel":  # replayed: the same draw on today's logits (pathwise)
            return T.gumbel_weights(torch.log_softmax(logits.float(), -1) + draw.noise, tau)
        if self.sampler == "multiplex":
            return T.multiplex_weights(draw.tokens, logits.shape[-1])
        return T.soft_weights(logits, tau)

    # ------------------------------------------------------------------ sampling and its density

    def sample(
        self, src: Source, embed: torch.Tensor, generator: torch.Generator | None, greedy: bool = False
    ):
        """Draw thoughts for sources [B]: (f [B, D], log-prob [B] float64, Draw).

        greedy: each thought's most likely value instead of a draw (no noise; multiplex: the top token
        every time), as greedy decoding takes the most likely token.
        """
        kind, device = self.sampler, embed.device
        lead = _lead(src)
        draw = Draw()
        if kind == "gaussian":
            draw.noise = torch.randn(*lead, self.hidden_size, generator=generator, device=device)
        elif kind == "gumbel":
            draw.noise = T.standard_gumbel(src.logits.shape, generator, device)
        elif kind == "multiplex" and greedy:
            draw.tokens = src.logits.argmax(-1, keepdim=True).expand(*lead, self.cfg.multiplex_samples)
        elif kind == "multiplex":
            draw.tokens = T.sample_multiplex(
                src.logits, self.cfg.thought_temperature, self.cfg.multiplex_samples, generator
            )
        if greedy and draw.noise is not None:
            draw.noise = torch.zeros_like(draw.noise)
        if kind == "gumbel":
            draw.perturbed = torch.log_softmax(src.logits.float(), -1) + draw.noise
        f = self.vector(src, embed, draw)
        return f, self.logprob(src, embed, draw, f, live=True), draw

    def logprob(
        self, src: Source, embed: torch.Tensor, draw: Draw, fed: torch.Tensor, live: bool
    ) -> torch.Tensor:
        """[...] float64 log-probability of the recorded thoughts `fed` [..., D] given their sources.

        live: the thought was rebuilt from its draw (`vector`), so a reparameterised draw (Gaussian,
        Gumbel) carries its gradient along the path and its density is a constant here. Otherwise the
        recorded thought is the action, and its density's score function carries the gradient.
        Multiplex tokens are discrete: their log-prob is the score function either way.
        """
        kind = self.sampler
        if kind == "none":
            return torch.zeros(_lead(src), dtype=torch.float64, device=fed.device)
        if kind == "multiplex":
            return T.multiplex_logprob(src.logits, draw.tokens, self.cfg.thought_temperature)
        if live:
            if kind == "gaussian":
                return T.standard_normal_logprob(draw.noise, self.cfg.noise_std)
            return T.gumbel_density(draw.noise)
        if kind == "gaussian":
            return T.gaussian_logprob(fed, self.vector(src, embed, None), self.cfg.noise_std)
        return T.gumbel_logprob(draw.perturbed, src.logits)

    # ------------------------------------------------------------------ the gated input

    @property
    def has_gate(self) -> bool:
        """False for `input: latent_only`, where the thought replaces the token embedding: no gate."""
        return self.cfg.input != "latent_only"

    def gate(self) -> torch.Tensor:
        """tanh(lambda): [D]."""
        return torch.tanh(self.gate_logit)

    def combine(self, token_embeds: torch.Tensor, fed_back: torch.Tensor) -> torch.Tensor:
        """The input of a feedback position: [..., D] token embeddings + [..., D] fed-back vector."""
        if self.cfg.input == "latent_only":
            return fed_back.to(token_embeds.dtype)
        return (token_embeds.float() + self.gate() * fed_back).to(token_embeds.dtype)


def _lead(src: Source) -> torch.Size:
    """The leading (batch, position) dimensions of a source."""
    t = src.hidden if src.hidden is not None else src.logits
    return t.shape[:-1]
