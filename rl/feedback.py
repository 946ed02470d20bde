"""The feedback adapter: from a hidden state to the continuous thought fed into the next input.

    f_t     = P(n(h_t^(l)))                 feedback vector
    e_{t+1} = E[x_{t+1}] + tanh(lambda) * f_t   gated next input (`gated_sum`)

`n` rescales each hidden vector to the RMS of the token embeddings: hidden states are
far larger than embeddings (Coconut issue #29), and an input of the wrong scale would
swamp the token part. `P` is the identity, a linear map initialised to the identity, or a
residual MLP whose output layer starts at zero. The gate `lambda` starts at 0, so at
switch-on the policy is the pretrained model exactly, while d(loss)/d(lambda) = f_t *
d(loss)/d(e) is not zero: the gate can open from the first step.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from rl.config import NeuraleseConfig
from rl.errors import ConfigError

RMS_EPS = 1e-6


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
    """Feedback layer choice (or learned mix), RMS matching, projection and gate.

    Parameters are kept in float32 whatever the model's dtype: the gate starts at exactly
    0 and its early gradients are small.
    """

    def __init__(self, cfg: NeuraleseConfig, hidden_size: int, num_hidden_states: int, embed_rms: float):
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
        self.gate_logit = nn.Parameter(torch.zeros(hidden_size))  # lambda
        self.register_buffer("target_rms", torch.tensor(float(embed_rms)))

    @classmethod
    def for_model(cls, cfg: NeuraleseConfig, model: nn.Module) -> FeedbackAdapter:
        """An adapter sized for `model`, RMS target taken from its embedding table."""
        emb = model.get_input_embeddings().weight
        with torch.no_grad(), _whole(emb):
            embed_rms = emb.float().pow(2).mean().sqrt().item()
        text_cfg = model.config.get_text_config()
        return cls(cfg, text_cfg.hidden_size, text_cfg.num_hidden_layers + 1, embed_rms)

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

    def feedback(self, h: torch.Tensor) -> torch.Tensor:
        """f = P(n(h)): [..., D] -> [..., D] (float32)."""
        h = h.float()
        return self.proj(h / rms(h) * self.target_rms)

    def gate(self) -> torch.Tensor:
        """tanh(lambda): [D]."""
        return torch.tanh(self.gate_logit)

    def combine(self, token_embeds: torch.Tensor, fed_back: torch.Tensor) -> torch.Tensor:
        """The input of a feedback position: [..., D] token embeddings + [..., D] fed-back vector."""
        if self.cfg.input == "latent_only":
            return fed_back.to(token_embeds.dtype)
        return (token_embeds.float() + self.gate() * fed_back).to(token_embeds.dtype)

    def noise_logprob(self, noise: torch.Tensor) -> torch.Tensor:
        """log N(sigma * eps; 0, sigma^2 I) summed over D, for standard-normal `noise` eps: [..., D] -> [...].

        Computed in float64: the constant term grows with D and float32 would blur the ratio.
        """
        sigma = self.cfg.noise_std
        d = noise.shape[-1]
        eps = noise.double()
        return -0.5 * eps.pow(2).sum(-1) - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)

    def gaussian_logprob(self, fed_back: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """log N(fed_back; mean, sigma^2 I) summed over D: [..., D], [..., D] -> [...] (float64)."""
        return self.noise_logprob((fed_back.double() - mean.double()) / self.cfg.noise_std)
