"""A common thought space of a set width: an encoder into it and a decoder out of it per model.

N models need 2N maps instead of N(N-1) translators; model i's state reaches model j as
dec_j(enc_i(x)). The maps are linear and fitted jointly, in closed form, on states of the same
text positions in every model: generalized CCA (the MAXVAR form) solved by alternating ridge.

    Z     <- top `width` principal directions of all models' states side by side (each model's
             centred states divided by their norm, so each model weighs the same), whitened
    repeat `iterations` times:
        enc_i <- ridge(X_i -> Z)                 every model predicts the shared code
        Z     <- mean_i enc_i(X_i), whitened     the code moves to what all models agree on
    dec_j <- ridge(stack_i enc_i(X_i) -> stack_i X_j)

Whitening (Z's columns orthonormal, times sqrt(N)) is what stops Z from collapsing to zero, the
trivial solution of "every encoder agrees"; it keeps the nearest orthonormal frame (Z = U V^T of Z's
SVD), a Procrustes step, so the code's axes do not spin between iterations. Each decoder is fitted
on every model's codes, so it reads a code from any model, not only its own.

Saved as a folder: `common_space.json` (width, models, widths) and `common_space.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from neuralese.errors import AlignmentError, CheckpointError
from neuralese.io import read_json, read_safetensors
from neuralese.translate.maps import check_width, load_weights, ridge, save_folder

META_FILE, WEIGHTS_FILE = "common_space.json", "common_space.safetensors"


def _whiten(z: torch.Tensor) -> torch.Tensor:
    """[N, d] -> the nearest matrix with orthonormal columns, times sqrt(N) (so Z^T Z / N = I)."""
    u, _, vh = torch.linalg.svd(z - z.mean(0), full_matrices=False)
    return u @ vh * len(z) ** 0.5


class CommonSpace(nn.Module):
    """Encoders `enc[i]`: D_i -> width and decoders `dec[i]`: width -> D_i, one pair per model."""

    def __init__(self, widths: list[int], width: int, models: list[str], meta: dict | None = None):
        super().__init__()
        self.widths, self.width, self.models = list(widths), width, list(models)
        self.meta = dict(meta or {})
        self.enc = nn.ModuleList(nn.Linear(d, width) for d in widths)
        self.dec = nn.ModuleList(nn.Linear(width, d) for d in widths)

    def index(self, model: str | int) -> int:
        if isinstance(model, int):
            return model
        if model not in self.models:
            raise AlignmentError(f"the common space has no model {model!r}; it was fitted on {self.models}")
        return self.models.index(model)

    def encode(self, x: torch.Tensor, model: str | int) -> torch.Tensor:
        """[..., D_i] states of `model` -> [..., width] codes."""
        i = self.index(model)
        check_width(x, self.widths[i], f"common-space encoder of {self.models[i]}")
        return self.enc[i](x)

    def decode(self, z: torch.Tensor, model: str | int) -> torch.Tensor:
        """[..., width] codes -> [..., D_j] states of `model`."""
        check_width(z, self.width, "common-space decoder")
        return self.dec[self.index(model)](z)

    def translate(self, x: torch.Tensor, source: str | int, target: str | int) -> torch.Tensor:
        """dec_target(enc_source(x)): [..., D_source] -> [..., D_target]."""
        return self.decode(self.encode(x, source), target)

    def config(self) -> dict:
        return {
            "kind": "common",
            "width": self.width,
            "models": self.models,
            "widths": self.widths,
            **self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write the folder (atomically): common_space.json + common_space.safetensors."""
        return save_folder(self, path, META_FILE, WEIGHTS_FILE)


def fit_common(
    states: list[torch.Tensor],
    width: int,
    strength: float,
    iterations: int,
    models: list[str],
    meta: dict | None = None,
) -> tuple[CommonSpace, list[float]]:
    """Fit the space on paired states (`states[i]` [N, D_i], row n the same position in every model);
    also returns, per iteration, the mean squared distance of each model's code to the shared one
    (lower: the models agree more)."""
    n = len(states[0])
    if any(len(s) != n for s in states):
        raise AlignmentError(
            f"paired states must have the same rows in every model; got {[len(s) for s in states]}"
        )
    xs = [s.double() for s in states]
    side_by_side = torch.cat([(x - x.mean(0)) / (x - x.mean(0)).norm().clamp_min(1e-12) for x in xs], 1)
    u, _, _ = torch.linalg.svd(side_by_side, full_matrices=False)
    z = u[:, :width].float()
    if z.shape[1] < width:  # fewer directions than the width: the rest start as seeded noise
        extra = torch.randn(n, width - z.shape[1], generator=torch.Generator().manual_seed(0))
        z = torch.cat([z, extra], 1)
    z = _whiten(z)
    spread = []
    for _ in range(iterations):
        maps = [ridge(x, z, strength) for x in states]
        codes = [x @ w + b for x, (w, b) in zip(states, maps)]
        z = _whiten(torch.stack(codes).mean(0))
        spread.append(
            round(float(torch.stack([(c - z).pow(2).sum(-1).mean() for c in codes]).mean()) / width, 6)
        )
    maps = [ridge(x, z, strength) for x in states]
    codes = torch.cat([x @ w + b for x, (w, b) in zip(states, maps)])  # [M*N, width]
    space = CommonSpace([s.shape[-1] for s in states], width, models, meta)
    with torch.no_grad():
        for i, (w, b) in enumerate(maps):
            space.enc[i].weight.copy_(w.T)
            space.enc[i].bias.copy_(b)
        for j, x in enumerate(states):
            w, b = ridge(codes, x.repeat(len(states), 1), strength)
            space.dec[j].weight.copy_(w.T)
            space.dec[j].bias.copy_(b)
    return space.eval(), spread


def load_common(path: str | Path) -> CommonSpace:
    """A folder written by `CommonSpace.save`; a damaged one is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"common-space folder {str(path)!r} does not exist")
    cfg = read_json(path / META_FILE, META_FILE)
    try:
        widths, width, models = (
            [int(w) for w in cfg["widths"]],
            int(cfg["width"]),
            [str(m) for m in cfg["models"]],
        )
        if len(widths) != len(models):
            raise ValueError(f"{len(widths)} widths for {len(models)} models")
        meta = {k: v for k, v in cfg.items() if k not in ("kind", "width", "widths", "models")}
        space = CommonSpace(widths, width, models, meta)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path / META_FILE}: not a common-space config ({type(e).__name__}: {e}); expected width, "
            "models and widths (one per model)"
        ) from None
    load_weights(space, read_safetensors(path / WEIGHTS_FILE, WEIGHTS_FILE), path / WEIGHTS_FILE)
    return space.eval()
