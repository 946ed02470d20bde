"""Translating thoughts between models: one model's fed-back state into another's input space.

- `states`: models reading the same texts; their fed-back states (`neuralese.layer`, RMS-matched as
  rl/feedback.py feeds them back) paired at the characters where every tokenizer ends a token.
- `maps`: pairwise translators, `linear` (closed-form ridge) and `mlp` (ridge plus a trained residual
  MLP), saved and loaded as folders.
- `common`: a common thought space of a set width, an encoder and a decoder per model fitted jointly
  (generalized CCA by alternating ridge), so model A reaches model B as dec_B(enc_A(x)).
- `fit`: `neuralese translate fit RECIPE.yaml` (the `translate` config section): fits them on the
  fit texts and reports their fidelity on held-out texts.
"""

from neuralese.translate.common import CommonSpace, fit_common, load_common
from neuralese.translate.maps import Translator, fit_linear, fit_mlp, load_translator, ridge
from neuralese.translate.states import Reader, paired_states, shared_ends

__all__ = [
    "CommonSpace",
    "Reader",
    "Translator",
    "fit_common",
    "fit_linear",
    "fit_mlp",
    "load_common",
    "load_translator",
    "paired_states",
    "ridge",
    "shared_ends",
]
