"""Translators from one model's fed-back states to another's: `linear` (closed-form ridge) and `mlp`.

    linear:  y = W x + b                       W, b by ridge regression on paired states
    mlp:     y = W x + b + W2 gelu(W1 x + b1)  the linear path starts at the ridge solution and W2 at
                                               zero, then everything is trained with AdamW on the MSE

Starting the MLP at the ridge solution makes the comparison a fair one: the MLP begins where
`linear` ends and can only add what a non-linear map finds. A translator is saved as a folder,
`translator.json` (kind, widths, the models it was fitted on) and `translator.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from neuralese.errors import AlignmentError, CheckpointError
from neuralese.io import atomic_dir, read_json, read_safetensors, write_json

META_FILE, WEIGHTS_FILE = "translator.json", "translator.safetensors"
KINDS = ("linear", "mlp")


def ridge(x: torch.Tensor, y: torch.Tensor, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge regression y ~ x @ W + b: [N, Dx], [N, Dy] -> W [Dx, Dy], b [Dy] (float32).

    The penalty is `strength` times the mean variance of x's features, so one setting suits states of
    any scale; the intercept is not penalised (both sides are centred first). Solved in float64.
    """
    x64, y64 = x.double(), y.double()
    mx, my = x64.mean(0), y64.mean(0)
    xc, yc = x64 - mx, y64 - my
    gram = xc.T @ xc  # [Dx, Dx]
    lam = strength * gram.diagonal().mean().clamp_min(1e-12)
    # Least squares rather than solve: with `strength: 0` and fewer positions than features the system
    # is singular, and the minimum-norm solution is the one wanted.
    w = torch.linalg.lstsq(
        gram + lam * torch.eye(len(gram), dtype=gram.dtype), xc.T @ yc, driver="gelsd"
    ).solution
    return w.float(), (my - mx @ w).float()


class Translator(nn.Module):
    """A map from `source_width` states to `target_width` states; `meta` says what it was fitted on."""

    def __init__(
        self, kind: str, source_width: int, target_width: int, hidden: int = 0, meta: dict | None = None
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"translator kind {kind!r}; expected one of {KINDS}")
        self.kind, self.source_width, self.target_width, self.hidden = (
            kind,
            source_width,
            target_width,
            hidden,
        )
        self.meta = dict(meta or {})
        self.linear = nn.Linear(source_width, target_width)
        if kind == "mlp":
            self.up = nn.Linear(source_width, hidden)
            self.down = nn.Linear(hidden, target_width)
            nn.init.zeros_(self.down.weight)
            nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., source_width] -> [..., target_width]."""
        check_width(
            x,
            self.source_width,
            f"{self.kind} translator {self.meta.get('source', '')}->{self.meta.get('target', '')}",
        )
        y = self.linear(x)
        if self.kind == "mlp":
            y = y + self.down(F.gelu(self.up(x)))
        return y

    def set_linear(self, w: torch.Tensor, b: torch.Tensor) -> None:
        """Set the linear path to y = x @ w + b (w [Ds, Dt], as `ridge` returns it)."""
        with torch.no_grad():
            self.linear.weight.copy_(w.T)
            self.linear.bias.copy_(b)

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "source_width": self.source_width,
            "target_width": self.target_width,
            "hidden": self.hidden,
            **self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write the folder (atomically): translator.json + translator.safetensors."""
        return save_folder(self, path, META_FILE, WEIGHTS_FILE)


def check_width(x: torch.Tensor, width: int, what: str) -> None:
    """An AlignmentError unless the states `x` [..., D] have D == width."""
    if x.shape[-1] != width:
        raise AlignmentError(
            f"{what} maps states of width {width}; got states of width {x.shape[-1]} "
            "(a translator fitted for another model)"
        )


def fit_linear(x: torch.Tensor, y: torch.Tensor, strength: float, meta: dict | None = None) -> Translator:
    """A `linear` translator fitted by ridge on paired states x [N, Ds] -> y [N, Dt]."""
    t = Translator("linear", x.shape[-1], y.shape[-1], meta=meta)
    t.set_linear(*ridge(x, y, strength))
    return t


def fit_mlp(
    x: torch.Tensor,
    y: torch.Tensor,
    strength: float,
    hidden: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    seed: int,
    meta: dict | None = None,
) -> tuple[Translator, list[float]]:
    """An `mlp` translator: the ridge solution plus a trained residual MLP; and its loss every 50 steps
    (MSE divided by the variance of y, so 1.0 is predicting the mean)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        t = Translator("mlp", x.shape[-1], y.shape[-1], hidden=hidden, meta=meta)
    t.set_linear(*ridge(x, y, strength))
    opt = torch.optim.AdamW(t.parameters(), lr=learning_rate, weight_decay=weight_decay)
    scale = y.var(0).sum().clamp_min(1e-12)  # per-row squared error of the mean predictor
    losses = []
    for step in range(steps):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
        loss = (t(x[idx]) - y[idx]).pow(2).sum(-1).mean() / scale
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            losses.append(round(loss.item(), 6))
    return t.eval(), losses


def load_translator(path: str | Path) -> Translator:
    """A translator folder written by `Translator.save`; a damaged or incomplete one is a CheckpointError
    naming the file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"translator folder {str(path)!r} does not exist")
    cfg = read_json(path / META_FILE, META_FILE)
    try:
        kind, ds, dt, hidden = (
            cfg["kind"],
            int(cfg["source_width"]),
            int(cfg["target_width"]),
            int(cfg["hidden"]),
        )
        meta = {k: v for k, v in cfg.items() if k not in ("kind", "source_width", "target_width", "hidden")}
        t = Translator(kind, ds, dt, hidden, meta)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path / META_FILE}: not a translator config ({type(e).__name__}: {e}); expected kind "
            f"({' or '.join(KINDS)}), source_width, target_width and hidden"
        ) from None
    load_weights(t, read_safetensors(path / WEIGHTS_FILE, WEIGHTS_FILE), path / WEIGHTS_FILE)
    return t.eval()


def load_weights(module: nn.Module, tensors: dict, file: Path) -> None:
    """Load `tensors` into `module`, every key and shape checked; a mismatch names `file`."""
    want = module.state_dict()
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    wrong = [
        f"{k} {tuple(tensors[k].shape)} (expected {tuple(v.shape)})"
        for k, v in want.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or extra or wrong:
        parts = [
            f"missing {missing}" if missing else "",
            f"unexpected {extra}" if extra else "",
            f"wrong shapes: {', '.join(wrong)}" if wrong else "",
        ]
        raise CheckpointError(f"{file}: does not match its config: {'; '.join(p for p in parts if p)}")
    module.load_state_dict(tensors)


def save_folder(module: nn.Module, path: str | Path, meta_file: str, weights_file: str) -> Path:
    """Write `module.config()` and its weights as one folder, atomically (a translator, a common space)."""
    from safetensors.torch import save_file

    with atomic_dir(path) as tmp:
        write_json(tmp / meta_file, module.config())
        save_file(
            {k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(tmp / weights_file)
        )
    return Path(path)
