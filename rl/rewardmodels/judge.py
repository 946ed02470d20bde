"""A generative judge as a reward function: a local causal LM asked a question about each completion.

    rewards:
      - fn: judge
        args:
          path: models/my-judge
          template: "{prompt}{completion} Is the sum right? Answer:"
          yes_token: " yes"
          no_token: " no"

The template is the user's: `{completion}` (required) is the completion's text, `{prompt}` the
prompt (a conversation rendered with the judge's chat template), and any other `{name}` a
column of the dataset (`{answer}` makes a reference-guided judge). The judge reads the filled
template and the reward is the probability of `yes_token` as its next token, or with `no_token`
p(yes) / (p(yes) + p(no)), then scale * p + offset. Sequences are right-padded and the next-token
distribution is read at each one's last real token, so a batch scores what each sample scores alone.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Literal

import torch

from neuralese.config import ModelConfig
from neuralese.errors import ConfigError, RewardError
from neuralese.models import load_model
from neuralese.policy import render_prompt
from neuralese.ranges import FiniteFloat, PositiveInt
from neuralese.rewardmodels.score import score_sequences
from neuralese.rewards.combine import register_reward_object
from neuralese.rewards.match import completion_text


@dataclass
class JudgeArgs:
    """`args` of a `judge` reward."""

    path: str = ""
    """The local folder of a causal LM (config, safetensors, tokenizer)."""
    template: str = ""
    """The question put to the judge: `{completion}` is required; `{prompt}` and `{<column>}` may appear."""
    yes_token: str = " yes"
    """The token whose probability is the score (exactly one token of the judge's tokenizer)."""
    no_token: str | None = None
    """If set, the score is p(yes) / (p(yes) + p(no)) instead of p(yes)."""
    scale: FiniteFloat = 1.0
    """reward = scale * p + offset."""
    offset: FiniteFloat = 0.0
    """reward = scale * p + offset."""
    batch_size: PositiveInt = 32
    """Questions per forward pass."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weight dtype; probabilities are computed in float32."""


def template_fields(template: str, key: str) -> list[str]:
    """The placeholders of `template`, or a ConfigError naming `key`: malformed, or no `{completion}`."""
    try:
        fields = [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise ConfigError(
            f"{key}: the judge template {template!r} is malformed ({e}); write fields as {{name}}"
        ) from None
    if "completion" not in fields:
        raise ConfigError(
            f"{key}: the judge template {template!r} has no {{completion}} placeholder, so the judge would never "
            "see the answer it scores; e.g. '{prompt}{completion} Is this right?'"
        )
    bad = [f for f in fields if not f.isidentifier()]
    if bad:
        raise ConfigError(f"{key}: the judge template's fields must be plain names, got {{{bad[0]}}}")
    return fields


class Judge:
    """The TRL reward contract over a causal LM's yes-probability: `judge(prompts, completions, **columns)`."""

    Args = JudgeArgs
    __name__ = "judge"

    def __init__(self, args: JudgeArgs, device: Any = "cpu", key: str = "args"):
        if not args.path:
            raise ConfigError(f"{key}.path: give the folder of the judge (a causal LM)")
        self.args, self.key = args, key
        self.fields = template_fields(args.template, f"{key}.template")
        self.model, self.tokenizer = load_model(
            args.path, ModelConfig(dtype=args.dtype), device, what=f"{key}.path"
        )
        self.model.eval()
        self.yes = self._token_id(args.yes_token, "yes_token")
        self.no = None if args.no_token is None else self._token_id(args.no_token, "no_token")
        self.last: dict[str, float] = {}
        self.distinct = 0

    def _token_id(self, text: str, name: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == self.tokenizer.unk_token_id:
            raise ConfigError(
                f"{self.key}.{name}: {text!r} is {len(ids)} tokens of the judge's tokenizer "
                f"({ids}); expected exactly one known token"
            )
        return ids[0]

    def questions(self, prompts: list, completions: list, columns: dict[str, Any]) -> list[str]:
        """The filled template of every sample."""
        n = len(completions)
        missing = [f for f in self.fields if f not in ("prompt", "completion") and f not in columns]
        if missing:
            raise RewardError(
                f"{self.key}.template: field {{{missing[0]}}} is neither prompt, completion nor a column "
                f"(columns: {', '.join(sorted(columns)) or 'none'})"
            )
        out = []
        for i in range(n):
            values = {
                f: columns[f][i] if isinstance(columns[f], list) else columns[f]
                for f in self.fields
                if f in columns
            }
            values.update(
                prompt=render_prompt(self.tokenizer, prompts[i]), completion=completion_text(completions[i])
            )
            out.append(self.args.template.format(**values))
        return out

    def probabilities(self, questions: list[str]) -> torch.Tensor:
        """[N] float32 p(yes) (or p(yes) / (p(yes) + p(no))) of each question's next token."""
        seqs = [list(ids) for ids in self.tokenizer(questions)["input_ids"]]
        pad = self.tokenizer.pad_token_id
        scores, self.distinct = score_sequences(
            seqs, self.args.batch_size, pad, self.model.device, self._forward
        )
        return scores

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=ids, attention_mask=mask).logits  # [B, T, V]
        last = mask.sum(-1) - 1  # [B] the last real token
        probs = logits[torch.arange(len(ids), device=ids.device), last].float().softmax(-1)  # [B, V]
        p = probs[:, self.yes]
        if self.no is not None:
            p = p / (p + probs[:, self.no]).clamp_min(torch.finfo(torch.float32).tiny)
        return p  # [B]

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float | None]:
        p = self.probabilities(self.questions(prompts, completions, columns))
        self.last = {"samples": len(completions), "distinct": self.distinct}
        return (self.args.scale * p + self.args.offset).tolist()

    def metrics(self) -> dict[str, float]:
        """What the last call did: samples judged, distinct questions asked."""
        return dict(self.last)


register_reward_object("judge", Judge)
