"""Stage 0 on the teacher's mixtures: CoT2's continuous supervision, `pretrain.objective: mixtures`.

CoT2 (Gozeten et al. 2025, arXiv 2505.23648) trains a continuous token toward the distribution over
every value a step can reach, and feeds the teacher's mixture of embeddings (not the model's own)
into the next position. Here the same, for any environment whose rows say what each step of the
written chain can reach (`reachable`: a list of token texts per step, `reachable_weights`: their
probabilities; MNNS's partial sums over all sign paths, reach's and ProsQA's frontier):

    position     prompt ...   step 1              ...  step K              answer ... eos
    input        tokens       w_1 @ E                  w_K @ E             tokens
    target       w_1          w_2                      answer              next tokens

The loss of a row is the cross-entropy of each step's prediction to its teacher distribution w_k,
plus the negative log-likelihood of the rest of the completion (the answer and eos, hard targets);
the loss of a batch is its rows' mean. No feedback runs: the teacher, not the model, makes every
mixture, so this is stage 0 and RL starts from the folder like from any other. At test time a model
trained so reads its own softmax(logits) @ E where it was fed a mixture (`reading_config`: embedding
space, temperature 1, `latent_only`; CoT2's evaluation).
"""

from __future__ import annotations

import datasets
import torch
import torch.nn.functional as F
from transformers import Trainer

from neuralese.config import NeuraleseConfig
from neuralese.errors import ConfigError
from neuralese.models import embed_scale
from neuralese.policy import tokenize_prompts
from neuralese.superposition import single_token

COLUMNS = ("reachable", "reachable_weights", "written_steps", "completion")


def reading_config(num_thoughts: int) -> NeuraleseConfig:
    """The thoughts a model trained on mixtures reads: its own expected next embedding at each step."""
    return NeuraleseConfig(
        mode="latent",
        space="embedding",
        input="latent_only",
        projection="identity",
        thought_temperature=1.0,
        num_thoughts=num_thoughts,
    )


def reachable_texts(rows: datasets.Dataset) -> list[str]:
    """Every text a step of `rows` can reach (for a tokenizer that must hold each as one token)."""
    if "reachable" not in rows.column_names:
        return []
    return sorted({text for steps in rows["reachable"] for step in steps for text in step})


def mixture_rows(rows: datasets.Dataset, tokenizer, source: str) -> datasets.Dataset:
    """Per row: prompt ids, each step's teacher as (token ids, weights), and the ids of the rest of the
    completion after the written steps, with eos. `source` names the rows in errors."""
    missing = [c for c in COLUMNS if c not in rows.column_names]
    if missing:
        raise ConfigError(
            f"pretrain.objective 'mixtures' needs rows that say what each written step can reach "
            f"({', '.join(COLUMNS)}); {source} has no {', '.join(missing)} column "
            f"(it has {', '.join(rows.column_names)})"
        )
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            "pretrain.objective 'mixtures': the tokenizer has no eos token to end the answer with"
        )
    token_of: dict[str, int] = {}
    out: dict[str, list] = {"prompt_ids": [], "step_ids": [], "step_weights": [], "tail_ids": []}
    for i, row in enumerate(rows):
        texts, weights, steps = row["reachable"], row["reachable_weights"], row["written_steps"]
        if len(texts) != len(steps) or len(weights) != len(texts):
            raise ConfigError(
                f"{source} row {i}: `reachable` ({len(texts)} steps) and `reachable_weights` "
                f"({len(weights)}) must have one entry per written step ({len(steps)})"
            )
        written = "".join(map(str, steps))
        if not str(row["completion"]).startswith(written):
            raise ConfigError(
                f"{source} row {i}: completion {row['completion']!r} does not begin with {written!r}"
            )
        ids_k, weights_k = [], []
        for k, (step_texts, step_weights) in enumerate(zip(texts, weights)):
            if len(step_texts) != len(step_weights) or not step_texts:
                raise ConfigError(
                    f"{source} row {i} step {k}: `reachable` {step_texts!r} and `reachable_weights` "
                    f"{step_weights!r} must be non-empty lists of the same length"
                )
            total = float(sum(step_weights))
            if min(step_weights) < 0 or abs(total - 1.0) > 1e-4:
                raise ConfigError(
                    f"{source} row {i} step {k}: `reachable_weights` must be a distribution (non-negative, "
                    f"summing to 1), got {step_weights!r}"
                )
            ids_k.append(
                [one_token(tokenizer, t, token_of, f"{source} row {i} step {k}") for t in step_texts]
            )
            weights_k.append([float(w) for w in step_weights])
        prompt_ids = tokenize_prompts(tokenizer, [row["prompt"]]).input_ids[0]
        tail = str(row["completion"])[len(written) :]
        tail_ids = tokenizer(tail, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        for key, value in zip(out, (prompt_ids, ids_k, weights_k, tail_ids)):
            out[key].append(value)
    return datasets.Dataset.from_dict(out)


def one_token(tokenizer, text: str, known: dict[str, int], where: str) -> int:
    """The id of `text`, which must be one token of the tokenizer (cached in `known`)."""
    if text not in known:
        token = single_token(tokenizer, text)
        if token is None:
            ids = tokenizer(text, add_special_tokens=False).input_ids
            raise ConfigError(
                f"{where}: reachable text {text!r} is {len(ids)} tokens {ids} of the tokenizer, not one: a "
                "mixture weighs one embedding per reachable value (a tiny model built by `neuralese "
                "pretrain` holds every reachable text as a piece; for numbers set model.tiny.number_pieces)"
            )
        known[text] = token
    return known[text]


def collate(features: list[dict], vocab_size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch: `input_ids` / `attention_mask` [B, L] (a step's own position holds pad: its
    input is the mixture), `step_at` [B, K] the position of each step's mixture (0 where a row has fewer
    steps, `step_mask` 0 there), `teacher` [B, K, V], and `labels` [B, L]: at position t the hard target
    read from t (the next token of the tail), -100 elsewhere."""
    lengths = [len(f["prompt_ids"]) + len(f["step_ids"]) + len(f["tail_ids"]) for f in features]
    B, L, K = len(features), max(lengths), max(len(f["step_ids"]) for f in features)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    step_at = torch.zeros(B, K, dtype=torch.long)
    step_mask = torch.zeros(B, K, dtype=torch.bool)
    teacher = torch.zeros(B, K, vocab_size)
    for b, f in enumerate(features):
        P, S, tail = len(f["prompt_ids"]), len(f["step_ids"]), f["tail_ids"]
        input_ids[b, :P] = torch.tensor(f["prompt_ids"])
        input_ids[b, P + S : P + S + len(tail)] = torch.tensor(tail)
        mask[b, : lengths[b]] = 1
        labels[b, P + S - 1 : P + S - 1 + len(tail)] = torch.tensor(tail)  # read from the last step on
        step_at[b, :S] = torch.arange(P, P + S)
        step_mask[b, :S] = True
        for k, (ids, weights) in enumerate(zip(f["step_ids"], f["step_weights"])):
            teacher[b, k].index_add_(0, torch.tensor(ids), torch.tensor(weights))
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "labels": labels,
        "step_at": step_at,
        "step_mask": step_mask,
        "teacher": teacher,
    }


def mixture_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-row loss [B]): each step's cross-entropy to its teacher, with the teacher's mixture
    fed at the step's position, plus the tail's negative log-likelihood; summed over a row, averaged
    over the batch."""
    ids, mask, step_at, step_mask = (
        batch["input_ids"],
        batch["attention_mask"],
        batch["step_at"],
        batch["step_mask"],
    )
    layer = model.get_input_embeddings()
    teacher = batch["teacher"].to(layer.weight.dtype)  # [B, K, V]
    rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(step_at)  # [B, K]
    embeds = layer(ids)  # [B, L, D]
    mixtures = (teacher @ layer.weight) * embed_scale(model)  # [B, K, D], as E[x] = scale * weight[x]
    embeds = embeds.index_put((rows[step_mask], step_at[step_mask]), mixtures[step_mask])
    logp = F.log_softmax(model(inputs_embeds=embeds, attention_mask=mask).logits.float(), dim=-1)  # [B, L, V]
    read = logp[rows, (step_at - 1).clamp_min(0)]  # [B, K, V]: the prediction of each step
    soft = -(batch["teacher"].float() * read).sum(-1) * step_mask  # [B, K]
    labels = batch["labels"]
    hard = F.nll_loss(logp.transpose(1, 2), labels.clamp_min(0), reduction="none") * (labels >= 0)  # [B, L]
    per_row = soft.sum(-1) + hard.sum(-1)
    return per_row.mean(), per_row.detach()


class MixtureTrainer(Trainer):
    """transformers' Trainer with the mixture loss (the batches come from `collate`)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, _ = mixture_loss(model, inputs)
        return (loss, None) if return_outputs else loss
