"""Finite scalar quantisation (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each of the d code dimensions is bounded to L_i values and rounded:

    bound(z)_i = tanh(z_i + s_i) * h_i - o_i      h_i = (L_i - 1)(1 - eps) / 2,  o_i = 0.5 if L_i even else 0,
                                                   s_i = atanh(o_i / h_i)
    q(z)       = round(bound(z)) / (L_i // 2)      rounded with a straight-through gradient, scaled to [-1, 1]

so dimension i takes the L_i integers from -(L_i // 2) (before scaling) up, and the code vocabulary is
prod(L_i): there is no codebook, so nothing can collapse. A code's index is its mixed-radix number
(digit i = round(bound(z)_i) + L_i // 2, place value prod(L_j, j < i)).

Departure from the paper's reference code: it shifts by tan(o / h); the shift exists so that
bound(0) = 0 for even L, and only atanh, tanh's inverse, gives that exactly (the two differ by < 1e-3).

The continuous alternative (`quantizer: none`, neuralese.codec.model) is tanh(z): bounded to the same
(-1, 1), not rounded.

    >>> import torch
    >>> fsq = FSQ([8, 5])
    >>> fsq.index(fsq(torch.zeros(1, 2)))  # bound(0) = 0 in both: digits (0 + 4, 0 + 2) -> 4 + 2 * 8
    tensor([20])
    >>> fsq.code(torch.tensor([20]))  # and back: 0 / 4, 0 / 2
    tensor([[0., 0.]])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neuralese.errors import CodecError

EPS = 1e-3  # keeps tanh's open ends off the last half-level, so round() never reaches L_i // 2 + 1
MAX_INDEX = 2**63 - 1  # a code's index is a torch.long


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward (straight-through)."""
    return x + (x.round() - x).detach()


class FSQ(nn.Module):
    """Bounded, rounded code dimensions (the module docstring)."""

    def __init__(self, levels: list[int]):
        super().__init__()
        self.levels_list = [int(v) for v in levels]
        levels_t = torch.tensor(self.levels_list, dtype=torch.float64)
        half_l = (levels_t - 1) * (1 - EPS) / 2
        offset = torch.where(levels_t % 2 == 0, 0.5, 0.0)
        basis = torch.cumprod(torch.tensor([1, *self.levels_list[:-1]], dtype=torch.long), 0)
        self.register_buffer("half_l", half_l.float(), persistent=False)
        self.register_buffer("offset", offset.float(), persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half_l).float(), persistent=False)
        self.register_buffer("half_width", (levels_t // 2).float(), persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels_list)

    @property
    def num_codes(self) -> int:
        """prod(L_i), exactly (a Python int: a code of more than 63 bits has no torch.long index)."""
        return math.prod(self.levels_list)

    @property
    def bits(self) -> float:
        """log2 of the code vocabulary: what one code can tell."""
        return sum(math.log2(v) for v in self.levels_list)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., d] in (-L_i / 2, L_i / 2) (shifted down by a half for even L_i)."""
        return torch.tanh(z.float() + self.shift) * self.half_l - self.offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[..., d] pre-code -> [..., d] grid code in [-1, 1]."""
        return round_ste(self.bound(z)) / self.half_width

    def snap(self, code: torch.Tensor) -> torch.Tensor:
        """[..., d] any values on the code's scale -> the nearest grid code (for a code predicted by a map)."""
        digits = (code.float() * self.half_width).round()
        low = -self.half_width
        high = self.levels_tensor - 1 - self.half_width
        return torch.maximum(torch.minimum(digits, high), low) / self.half_width

    @property
    def levels_tensor(self) -> torch.Tensor:
        return self.half_width.new_tensor(self.levels_list)

    def digits(self, code: torch.Tensor) -> torch.Tensor:
        """[..., d] grid code -> [..., d] long digits, digit i in [0, L_i): a code's identity at any size."""
        return (code * self.half_width).round().long() + self.half_width.long()

    def index(self, code: torch.Tensor) -> torch.Tensor:
        """[..., d] grid code -> [...] long index in [0, prod(L)); refused for a code of more than 63 bits."""
        self._need_index("index")
        return (self.digits(code) * self.basis).sum(-1)

    def code(self, index: torch.Tensor) -> torch.Tensor:
        """[...] long index -> [..., d] grid code (the inverse of `index`)."""
        self._need_index("code")
        digits = (index[..., None] // self.basis) % self.levels_tensor.long()
        return (digits - self.half_width.long()).float() / self.half_width

    def _need_index(self, what: str) -> None:
        if self.num_codes > MAX_INDEX:
            raise CodecError(
                f"FSQ.{what}: levels {self.levels_list} make {self.num_codes:.3g} codes ({self.bits:.0f} bits), "
                "too many for a 64-bit index; a code this wide is used as a vector (encode / decode), not by number"
            )
