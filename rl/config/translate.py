"""The sections of a recipe about translating thoughts between models: `translate` (fitting translators,
`neuralese translate fit`) and `cross` (thinking across models: neuralese.translate.cross).

Kept apart from rl/config/sections.py so these fields sit together; `RunConfig.translate` and
`RunConfig.cross` hold them, so the recipe loader's checks (unknown keys, types, declared ranges:
neuralese.ranges) cover them like any section; the rules of a cross-model run that span sections are
its policy kind's (neuralese.translate.cross).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from neuralese.ranges import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt


@dataclass
class TranslateConfig:
    """`neuralese translate fit`: translators between the fed-back states (`neuralese.layer`) of two or
    more models, fitted on paired states of the models reading the same texts (neuralese.translate)."""

    models: list[str] = field(default_factory=list)
    """Model folders (two or more). Linear and MLP translators are fitted for every ordered pair; the
    common space has one encoder and decoder per model."""
    kinds: list[Literal["linear", "mlp", "common"]] = field(
        default_factory=lambda: ["linear", "mlp", "common"]
    )
    """What to fit: `linear` (closed-form ridge), `mlp` (the ridge map plus a trained residual MLP),
    `common` (a shared space of `common_width`, fitted by generalized CCA with alternating ridge)."""
    text_file: str | None = None
    """A UTF-8 text file, one text per line: the first `fit_texts` lines fit, the next `held_out_texts`
    are held out. None reads the environment (`env`): its train split fits, `env.test_split` is held out
    (each text a prompt followed by its completion, or its answer)."""
    fit_texts: PositiveInt = 2000
    """Texts whose positions fit the translators."""
    held_out_texts: PositiveInt = 200
    """Texts whose positions measure them (never fitted on)."""
    batch_size: PositiveInt = 64
    """Texts per forward pass when reading states."""
    min_aligned_positions: PositiveInt = 100
    """Fewest positions (all models ending a token at the same character) the fit texts must give; fewer
    is an error: the tokenizers share too few boundaries to pair states."""
    ridge: NonNegativeFloat = 1e-3
    """Ridge penalty, relative to the mean variance of the input features (scale-free)."""
    mlp_hidden: PositiveInt = 256
    """Width of the MLP translator's hidden layer."""
    mlp_steps: NonNegativeInt = 500
    """AdamW steps of the MLP translator (from the ridge solution)."""
    mlp_batch_size: PositiveInt = 256
    """Paired positions per MLP step."""
    mlp_learning_rate: PositiveFloat = 1e-3
    """MLP learning rate."""
    mlp_weight_decay: NonNegativeFloat = 0.01
    """MLP AdamW weight decay."""
    common_width: PositiveInt = 64
    """Width of the common thought space."""
    common_iterations: PositiveInt = 10
    """Alternating-ridge iterations of the common space."""
    output_dir: str | None = None
    """Where the translators and `report.json` go; None: `<output_dir>/translate`."""


@dataclass
class CrossConfig:
    """Thinking across models (neuralese.translate.cross): a thinker model A writes `neuralese.num_thoughts` latent
    thoughts for the prompt, a translator carries each into the input space of this run's model B
    (`model.path`, the reader), and B answers from them, its K thought positions receiving A's translated
    thoughts. RL trains the translator (and B's gate, and with `reader: lora` B's LoRA weights) on B's reward,
    the gradient passing through the translation into A's chain, truncated by `neuralese.tbptt_window`."""

    thinker: str | None = None
    """Model folder of the thinker A (a plain Hugging Face folder, or an exported policy in latent mode with
    its own feedback weights); None: no cross-model thinking, the run's model thinks for itself. A is frozen."""
    translator: str | None = None
    """A translator folder from A to B written by `neuralese translate fit` (`linear/A-to-B/` or `mlp/A-to-B/`):
    fitted on `neuralese.layer`'s states of these two models. It is the trained part."""
    thinker_input: Literal["latent_only", "gated_sum"] = "latent_only"
    """What A's thought positions read: `latent_only`, the thought before alone (Coconut's input: with
    `neuralese.layer: -1` a soft version of the token A would write next, so A's K thoughts run ahead
    through its answer); `gated_sum`, A's thought token plus its gated thought (A's gate is closed, as A is
    not trained: its thought positions then read no thought). `neuralese.input` is B's."""
    reader: Literal["frozen", "lora"] = "frozen"
    """How B trains: `frozen` (only the translator and B's gate learn; `model.lora.r` must be 0) or `lora`
    (B's LoRA weights too, as `model.lora` sets them; `model.lora.r` must be > 0)."""
