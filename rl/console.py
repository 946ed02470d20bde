"""What a long command shows on the terminal: a start banner, a progress bar with the phase of the
step in progress, and a line for each evaluation printed above the bar.

Everything goes to stderr (as tqdm's bar does), so stdout keeps the one JSON line a command prints
for scripts. Only the main process of a multi-process run writes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from neuralese.config import RunConfig
from neuralese.modes import get_mode

# The numbers an evaluation line shows, in order, with their short names and formats.
EVAL_SHOWN = (
    ("eval/accuracy", "accuracy", ".3f"),
    ("eval/pass_at_1", "pass@1", ".3f"),
    ("eval/pass_at_k", "pass@k", ".3f"),
    ("eval/mean_generated_positions", "positions", ".2f"),
    ("eval/n", "n", "d"),
)


def count(n: int) -> str:
    """A parameter count as people say it: 1.05M, 494M, 1.54B."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def parameters(module: torch.nn.Module) -> tuple[int, int]:
    """(all, trained) parameters of a module, each shared tensor once."""
    seen: dict[int, torch.nn.Parameter] = {id(p): p for p in module.parameters()}
    return sum(p.numel() for p in seen.values()), sum(p.numel() for p in seen.values() if p.requires_grad)


def parameter_line(model: torch.nn.Module, adapter: torch.nn.Module | None = None) -> str:
    """`1.05M parameters (1.05M trained), feedback adapter 16.5K`: a model's size, as a banner shows it."""
    total, trained = parameters(model)
    extra = "" if adapter is None else f", feedback adapter {count(parameters(adapter)[0])}"
    return f"{count(total)} parameters ({count(trained)} trained){extra}"


def banner(cfg: RunConfig, out, base: str, accelerator, resume: bool) -> tuple[str, list[tuple[str, str]]]:
    """What a run is, shown while its model loads: folder, model, device, mode, algorithm, data."""
    rl, nz = cfg.rl, cfg.neuralese
    processes = accelerator.num_processes
    precision = "" if accelerator.mixed_precision == "no" else f", {accelerator.mixed_precision} autocast"
    lr = f"learning rate {rl.learning_rate:g}"
    if get_mode(nz).feeds_back and rl.feedback_learning_rate is not None:
        lr += f" (feedback {rl.feedback_learning_rate:g})"
    lora = f", LoRA r={cfg.model.lora.r}" if cfg.model.lora.r else ""
    rows = [
        ("run", f"{out} ({'resumed' if resume else 'new'})"),
        (
            "model",
            f"{base}{lora}" if base == cfg.model.path else f"{base} (a copy of {cfg.model.path}){lora}",
        ),
        ("device", f"{accelerator.device} x {processes}, {cfg.model.dtype}{precision}"),
        (
            "mode",
            f"{nz.mode}, tbptt_window {nz.tbptt_window}, layer {nz.layer}, space {nz.space}, input {nz.input}",
        ),
        (
            "algorithm",
            f"{rl.algorithm}: {rl.steps} steps of {rl.prompts_per_step} prompts x {rl.samples_per_prompt} "
            f"samples, {lr}",
        ),
        ("env", f"{cfg.env.name} {cfg.env.args or ''}".strip()),
    ]
    return "neuralese train: loading the model", rows


def evaluation_line(step: int, metrics: dict[str, Any]) -> str:
    """`step 50 | eval accuracy 0.812  positions 5.40  n 500`: an evaluation's numbers on one line."""
    shown = [f"{name} {metrics[key]:{fmt}}" for key, name, fmt in EVAL_SHOWN if key in metrics]
    return f"step {step} | eval " + "  ".join(shown)


class Console:
    """The terminal side of a command: `say` a line, a `progress` bar whose `phase` shows inside a step."""

    def __init__(self, prog: str, enabled: bool = True):
        self.prog = prog
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.desc = ""

    def say(self, text: str) -> None:
        """One line (above the progress bar while one is drawn)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def notice(self, text: str) -> None:
        """A line that says something the user should know: `neuralese train: ...`."""
        self.say(f"{self.prog}: {text}")

    def table(self, title: str, rows: list[tuple[str, str]]) -> None:
        """A banner: a title and aligned `name  value` lines."""
        width = max(len(name) for name, _ in rows)
        self.say("\n".join([title, *(f"  {name:<{width}}  {value}" for name, value in rows)]))

    @contextlib.contextmanager
    def progress(self, total: int, initial: int, desc: str, unit: str) -> Iterator[tqdm]:
        """A progress bar for the `with` block; an error closes it first, so its message starts on a
        line of its own."""
        with tqdm(
            total=total, initial=initial, desc=desc, unit=unit, disable=not self.enabled, dynamic_ncols=True
        ) as bar:
            self.bar, self.desc = bar, desc
            try:
                yield bar
            finally:
                self.bar = None

    def phase(self, name: str | None) -> None:
        """What the step in progress is doing (rollout, reward, update, eval, save), on the bar; None:
        between steps."""
        if self.bar is not None and self.enabled:
            self.bar.set_description_str(self.desc if name is None else f"{self.desc} [{name}]", refresh=True)
