"""Channel mode: a persistent thought state beside the tokens, never softmaxed, never written as a token.

A state s of width r (default a quarter of the hidden size) rides along every generated position:

    f_t     = P(x(src_{t-1})) (+ sigma * eps)      the thought, as in every mode (neuralese.feedback)
    s_t     = a * s_{t-1} + W_in f_t               a = sigmoid(rho) in (0, 1), learned per dimension
    e_t     = E[x_t] + tanh(lambda) * W_out s_t    the next input

with s = 0 before the first generated position: the prompt is read in parallel, as in every mode.
Hybrid feedback is wiped after each token (only the last hidden state is fed); the channel keeps a
decaying sum of all of them, so what a position wrote can still reach an input many tokens later
without passing through any token. W_out starts as r orthonormal columns Q and W_in as
Q^T, so at a -> 0 the channel is hybrid feedback projected onto an r-dimensional subspace that every
input dimension sees part of; the gate starts closed, so at switch-on the policy is the pretrained
model exactly.

What is random is the thought f_t (any space and sampler of neuralese.thoughts); the state is a function
of the thoughts, recorded (`extra['state']`, [B, L, r]) with them (`extra['thought']`), so the
recompute is exact and a constant edge scores the drawn thought, not the state.

TBPTT window k: block TBPTT as in hybrid mode. A live block [s, e) starts from the recorded state
s_{s-1} (a constant: no gradient reaches the thoughts before the block through it) and its first
thought from a pass-1 hidden state, so no gradient path crosses more than k recurrence steps; the
retention and both maps still get gradient from every live step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neuralese.modes.base import ThoughtMode, blocks_of


class Retention(nn.Module):
    """a = sigmoid(rho), one value per state dimension. A module (not a bare parameter), so that
    ZeRO-3's forward hooks gather rho wherever it is read."""

    def __init__(self, width: int, init: float):
        super().__init__()
        self.logit = nn.Parameter(torch.full((width,), math.log(init / (1 - init))))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)  # [r]


class ChannelWeights(nn.Module):
    """W_in [r, D], W_out [D, r] and the retention a [r]; float32, like the rest of the adapter."""

    def __init__(self, hidden_size: int, width: int, retention: float):
        super().__init__()
        self.write = nn.Linear(hidden_size, width, bias=False)  # W_in
        self.read = nn.Linear(width, hidden_size, bias=False)  # W_out
        self.retention = Retention(width, retention)
        # W_out = Q, W_in = Q^T with Q [D, r] orthonormal columns of a random subspace (a fixed draw, so
        # every build starts alike). Not the first r coordinates: with W_out's other rows zero and the
        # gate closed, the gate of those D - r inputs and those rows both get zero gradient (each is the
        # other's factor), so the channel could never reach them.
        q, _ = torch.linalg.qr(torch.randn(hidden_size, width, generator=torch.Generator().manual_seed(0)))
        with torch.no_grad():
            self.write.weight.copy_(q.T)
            self.read.weight.copy_(q)

    def step(self, state: torch.Tensor, thought: torch.Tensor) -> torch.Tensor:
        """s_t = a * s_{t-1} + W_in f_t: [..., r], [..., D] -> [..., r]."""
        return self.retention() * state + self.write(thought)


class ChannelMode(ThoughtMode):
    name = "channel"
    feeds_back = True
    feeds_answer = True

    def width(self, hidden_size: int) -> int:
        return self.cfg.channel_width or max(1, hidden_size // 4)

    def weights(self, hidden_size: int) -> nn.Module:
        return ChannelWeights(hidden_size, self.width(hidden_size), self.cfg.channel_retention)

    def carry(self, policy, thought: torch.Tensor, state, fb: torch.Tensor):
        w = policy.adapter.channel
        if state is None:  # before the first generated position
            state = thought.new_zeros(thought.shape[0], w.write.out_features)
        # Rows without feedback (finished ones) keep their state, in the rollout and the recompute alike.
        state = torch.where(fb[:, None], w.step(state, thought), state)  # [B, r]
        return w.read(state), state, {"thought": thought, "state": state}

    def entering_state(self, ro, t: int) -> torch.Tensor:
        return ro.extra["state"][:, t - 1]  # [B, r]: zeros before the first generated position

    def live_blocks(self, prompt_length: int, length: int, window) -> list[tuple[int, int]]:
        return blocks_of(prompt_length, length, window)

    # ------------------------------------------------------------------ inspection

    def inspect_columns(self, policy, ro, positions: torch.Tensor) -> dict[str, list[float | None]]:
        """|s|: the norm of the state fed into each position; kept: |a * s_{t-1}| / |s_t|, the share of
        it carried over from the position before (1: nothing new written, 0: nothing retained)."""
        w = policy.adapter.channel
        state = ro.extra["state"][0]  # [L, r]
        kept = (w.retention() * state[positions - 1]).norm(dim=-1) / state[positions].norm(dim=-1).clamp_min(
            1e-12
        )
        return {"|s|": state[positions].norm(dim=-1).tolist(), "kept": kept.tolist()}

    def weight_stats(self, policy) -> dict[str, float]:
        """The retention a: near 0 the channel is hybrid feedback restricted to r dimensions, near 1 it
        forgets nothing."""
        a = policy.adapter.channel.retention().detach()
        return {"a mean": float(a.mean()), "a min": float(a.min()), "a max": float(a.max())}

    def describe(self, policy) -> str:
        a = self.weight_stats(policy)
        return (
            f"channel: width {policy.adapter.channel.write.out_features}, retention a mean {a['a mean']:.4f}, "
            f"min {a['a min']:.4f}, max {a['a max']:.4f}"
        )
