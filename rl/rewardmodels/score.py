"""A reward model as a reward function: a local sequence classifier with one logit.

    rewards:
      - fn: reward_model
        args: {path: runs/quickstart/reward-model/gear-0, scale: 1.0, offset: 0.0}

The folder is what `AutoModelForSequenceClassification.save_pretrained` writes (TRL's
RewardTrainer, `neuralese reward-model train`). Each (prompt, completion) is tokenized the way
TRL's RewardTrainer prepares a preference pair (`sample_ids`), so a model scores what it was
trained on; sequences are right-padded, so the classifier pools the same last token and every
position keeps its index: a batch scores what each sample scores alone. Scores are taken in
eval mode without gradient, in batches of `batch_size`, on the policy's device, and a sample
that repeats within a call (a GRPO group that agrees) is scored once.

reward = scale * s + offset, where s is the raw logit, or with `calibrated: true` the estimated
probability that the completion is right, sigmoid(a * logit + b), with (a, b) fitted by
`neuralese reward-model train` on held-out samples labelled by the environment's check (its
`reward_model.json`). With `abstain_below` < `abstain_above`, rewards strictly between them are
None: the model leaves the samples it is unsure of to the next stage of a cascade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from neuralese.errors import CheckpointError, ConfigError, RewardError
from neuralese.io import read_json
from neuralese.models import DTYPES, check_model_folder, load_tokenizer
from neuralese.ranges import FiniteFloat, PositiveInt
from neuralese.rewards.combine import register_reward_object
from neuralese.rewards.match import completion_text

META_FILE = "reward_model.json"  # what `neuralese reward-model train` measured, and the calibration


@dataclass
class RewardModelArgs:
    """`args` of a `reward_model` reward."""

    path: str = ""
    """The local folder of a sequence classifier with one logit (config, safetensors, tokenizer)."""
    scale: FiniteFloat = 1.0
    """reward = scale * s + offset."""
    offset: FiniteFloat = 0.0
    """reward = scale * s + offset."""
    calibrated: bool = False
    """s is sigmoid(a * logit + b), the calibrated probability of a right answer (the folder's
    reward_model.json), instead of the raw logit."""
    abstain_below: FiniteFloat | None = None
    """With `abstain_above`: rewards strictly between the two are None (left to a cascade's next stage)."""
    abstain_above: FiniteFloat | None = None
    """With `abstain_below`: the upper end of the band of rewards returned as None."""
    batch_size: PositiveInt = 64
    """Samples per forward pass."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weight dtype; scores are returned as float32 either way."""


def sample_ids(tokenizer, prompts: list, completions: list) -> list[list[int]]:
    """Token ids of each (prompt, completion) as TRL's RewardTrainer prepares a side of a pair:
    prompt + completion text ending in the eos token (all texts in one tokenizer call), or a
    conversation through the tokenizer's chat template."""
    out: list[list[int]] = [[] for _ in prompts]
    texts: dict[int, str] = {}
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        if isinstance(prompt, list):  # conversational
            reply = (
                completion
                if isinstance(completion, list)
                else [{"role": "assistant", "content": str(completion)}]
            )
            out[i] = list(
                tokenizer.apply_chat_template(prompt + reply, tokenize=True, return_dict=True)["input_ids"]
            )
            continue
        text = str(prompt) + completion_text(completion)
        if tokenizer.eos_token and not text.endswith(tokenizer.eos_token):
            text += tokenizer.eos_token
        texts[i] = text
    if texts:
        for i, ids in zip(texts, tokenizer(list(texts.values()))["input_ids"]):
            out[i] = list(ids)
    return out


def load_reward_model(
    path: str | Path, device: Any = "cpu", key: str = "path", dtype: str = "float32"
) -> tuple[PreTrainedModel, Any]:
    """A sequence classifier with one logit and its tokenizer, in eval mode, or a CheckpointError that
    names `key` and the folder: not a model folder, no classification head, more than one logit."""
    folder = check_model_folder(
        path, what=key, made_by="`neuralese reward-model train RECIPE.yaml` trains one there"
    )
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(folder),
            local_files_only=True,
            use_safetensors=True,
            dtype=DTYPES[dtype],
            output_loading_info=True,
        )
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{key}: cannot load {str(folder)!r} as a sequence classifier: {e}") from None
    missing = sorted(info.get("missing_keys", []))
    if missing:  # transformers would start them at random: a reward drawn from noise
        arch = ", ".join(
            getattr(AutoConfig.from_pretrained(str(folder), local_files_only=True), "architectures", None)
            or ["?"]
        )
        raise CheckpointError(
            f"{key}: {str(folder)!r} has no classification head (its weights lack {', '.join(missing[:3])}; the "
            f"folder holds {arch}); expected a sequence classifier with one logit, as `neuralese reward-model "
            "train` or AutoModelForSequenceClassification.save_pretrained writes it"
        )
    if model.config.num_labels != 1:
        raise CheckpointError(
            f"{key}: {str(folder)!r} is a sequence classifier with {model.config.num_labels} logits per sample "
            "(num_labels); a reward model gives one (num_labels: 1), as TRL's RewardTrainer trains it"
        )
    tokenizer = load_tokenizer(folder)
    tokenizer.padding_side = "right"
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer


def pad_right(seqs: list[tuple[int, ...]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] ids and attention mask, padded on the right (every real token keeps its position)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def score_sequences(
    seqs: list[list[int]], batch_size: int, pad_id: int, device: Any, forward: Callable
) -> tuple[torch.Tensor, int]:
    """[N] float32 `forward(ids [B, T], mask [B, T]) -> [B]` of every sequence, in the order given, and
    how many were distinct. Each distinct sequence is scored once (GRPO groups repeat answers), in
    batches of similar length (sorted: the same batches every call), right-padded."""
    distinct = list(dict.fromkeys(tuple(s) for s in seqs))
    order = sorted(range(len(distinct)), key=lambda i: len(distinct[i]))
    scores = torch.empty(len(distinct), dtype=torch.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = pad_right([distinct[i] for i in idx], pad_id, device)
        scores[idx] = forward(ids, mask).float().cpu()
    where = {s: i for i, s in enumerate(distinct)}
    return scores[[where[tuple(s)] for s in seqs]], len(distinct)


class RewardModel:
    """The TRL reward contract over a sequence classifier: `rm(prompts, completions, **columns)`."""

    Args = RewardModelArgs
    __name__ = "reward_model"

    def __init__(self, args: RewardModelArgs, device: Any = "cpu", key: str = "args"):
        if not args.path:
            raise ConfigError(f"{key}.path: give the folder of the reward model (a sequence classifier)")
        if (args.abstain_below is None) != (args.abstain_above is None) or (
            args.abstain_below is not None and args.abstain_below >= args.abstain_above
        ):
            raise ConfigError(
                f"{key}: abstain_below ({args.abstain_below}) and abstain_above ({args.abstain_above}) must be "
                "given together, the first below the second"
            )
        self.args, self.key = args, key
        self.model, self.tokenizer = load_reward_model(args.path, device, f"{key}.path", args.dtype)
        self.calibration = self._calibration() if args.calibrated else None
        self.last: dict[str, float] = {}
        self.distinct = 0

    def _calibration(self) -> tuple[float, float]:
        meta = Path(self.args.path) / META_FILE
        if not meta.is_file():
            raise ConfigError(
                f"{self.key}.calibrated: {str(meta)!r} does not exist; the calibration comes from "
                "`neuralese reward-model train` (or set calibrated: false)"
            )
        cal = read_json(meta, META_FILE).get("calibration") or {}
        if not all(isinstance(cal.get(k), (int, float)) for k in ("scale", "offset")):
            raise CheckpointError(
                f"{meta}: has no calibration {{scale, offset}}; set {self.key}.calibrated: false"
            )
        return float(cal["scale"]), float(cal["offset"])

    def logits(self, prompts: list, completions: list) -> torch.Tensor:
        """[N] float32 raw scores, in the order given."""
        seqs = sample_ids(self.tokenizer, prompts, completions)
        scores, self.distinct = score_sequences(
            seqs, self.args.batch_size, self.tokenizer.pad_token_id, self.model.device, self._forward
        )
        return scores

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=ids, attention_mask=mask).logits  # [B, num_labels]
        if logits.shape[-1] != 1:
            raise RewardError(
                f"{self.key}.path: the model gave {logits.shape[-1]} logits per sample; a reward model gives one"
            )
        return logits[:, 0]  # [B]

    def __call__(self, prompts: list, completions: list, **_: Any) -> list[float | None]:
        s = self.logits(prompts, completions)
        if self.calibration is not None:
            a, b = self.calibration
            s = torch.sigmoid(a * s + b)
        rewards = (self.args.scale * s + self.args.offset).tolist()
        low, high = self.args.abstain_below, self.args.abstain_above
        out = [None if low is not None and low < r < high else r for r in rewards]
        self.last = {
            "samples": len(out),
            "distinct": self.distinct,
            "answered": sum(v is not None for v in out) / max(1, len(out)),
        }
        return out

    def metrics(self) -> dict[str, float]:
        """What the last call did: samples, distinct samples scored, share answered (not abstained)."""
        return dict(self.last)


register_reward_object("reward_model", RewardModel)
