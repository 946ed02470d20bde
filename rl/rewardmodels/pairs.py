"""Preference pairs for reward-model training: from a policy's own samples, or from a file.

Samples: each prompt gets `samples_per_prompt` completions from the policy. Gear 0 labels them
with the environment's check (right or wrong) and pairs distinct right completions (chosen) with
distinct wrong ones (rejected) of the same prompt; a later gear ranks them by the previous
reward model's score and pairs the best with the worst, the second best with the second worst,
... while their scores differ by at least a margin. Pairs never cross prompts: a Bradley-Terry
model learns only which of two answers to one question is better.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch

from neuralese.envs import Environment, correctness_check
from neuralese.errors import ConfigError
from neuralese.io import read_jsonl
from neuralese.policy import NeuralesePolicy
from neuralese.rewards.combine import compute_rewards

PAIR_COLUMNS = ("prompt", "chosen", "rejected")


@dataclass
class Samples:
    """Completions of `prompts`, grouped: `groups[i]` holds prompt i's completions, `columns` its other
    dataset columns (what the environment's check reads), `extras` one entry per completion (the
    reward columns of the rollout: completion ids, thoughts, generated positions)."""

    prompts: list
    groups: list[list[str]]
    columns: dict[str, list]
    extras: dict[str, list] = field(default_factory=dict)

    def flat(self) -> tuple[list, list[str], dict[str, list]]:
        """prompts, completions and columns with one entry per completion."""
        sizes = [len(g) for g in self.groups]
        prompts = [p for p, k in zip(self.prompts, sizes) for _ in range(k)]
        columns = {c: [v for v, k in zip(vals, sizes) for _ in range(k)] for c, vals in self.columns.items()}
        columns.update(self.extras)
        return prompts, [c for g in self.groups for c in g], columns

    def regroup(self, values: list) -> list[list]:
        """Per-completion `values` cut back into the groups."""
        out, start = [], 0
        for g in self.groups:
            out.append(values[start : start + len(g)])
            start += len(g)
        return out


def sample(
    policy: NeuralesePolicy,
    rows: datasets.Dataset,
    per_prompt: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
) -> Samples:
    """`per_prompt` completions of every row's prompt, sampled from `policy` (seeded)."""
    prompts = list(rows["prompt"])
    repeated = [p for p in prompts for _ in range(per_prompt)]
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    texts, extras = policy.complete(repeated, max_new_tokens, temperature, 256, generator)
    groups = [texts[i * per_prompt : (i + 1) * per_prompt] for i in range(len(prompts))]
    columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
    return Samples(prompts, groups, columns, extras)


def judge(env: Environment, samples: Samples) -> list[list[bool]]:
    """Each completion right (True) or wrong by the environment's correctness check (>= 1)."""
    prompts, completions, columns = samples.flat()
    total, _ = compute_rewards([correctness_check(env)], [1.0], prompts, completions, columns)
    return samples.regroup((total >= 1).tolist())


def labelled_pairs(samples: Samples, labels: list[list[bool]], per_prompt: int, seed: int) -> list[dict]:
    """Right (chosen) against wrong (rejected) distinct completions of one prompt, at most `per_prompt` each."""
    rng = random.Random(seed)
    pairs = []
    for prompt, texts, ok in zip(samples.prompts, samples.groups, labels, strict=True):
        good = list(dict.fromkeys(t for t, y in zip(texts, ok) if y))
        bad = list(dict.fromkeys(t for t, y in zip(texts, ok) if not y))
        combos = [(g, b) for g in good for b in bad]
        rng.shuffle(combos)
        pairs += [{"prompt": prompt, "chosen": g, "rejected": b} for g, b in combos[:per_prompt]]
    return pairs


def ranked_pairs(
    samples: Samples, scores: list[list[float]], per_prompt: int, min_margin: float
) -> list[dict]:
    """Best against worst distinct completions of one prompt by `scores`, while they differ by `min_margin`."""
    pairs = []
    for prompt, texts, s in zip(samples.prompts, samples.groups, scores, strict=True):
        best = dict(zip(texts, s))  # distinct texts (a text's score is the same every time)
        order = sorted(best, key=lambda t: -best[t])
        for j in range(min(per_prompt, len(order) // 2)):
            hi, lo = order[j], order[-1 - j]
            if best[hi] - best[lo] < min_margin or best[hi] == best[lo]:
                break
            pairs.append({"prompt": prompt, "chosen": hi, "rejected": lo})
    return pairs


def read_pairs(path: str | Path, key: str = "reward_model.pairs_file") -> list[dict]:
    """The pairs of a JSON Lines file, each a mapping with text `prompt`, `chosen` and `rejected`
    (a prompt may also be a list of chat messages); a ConfigError names the file and line."""
    pairs = []
    for n, row in read_jsonl(path, f"{key} file", ConfigError, where=f"{path}:"):
        problem = _pair_problem(row)
        if problem:
            raise ConfigError(f"{path}: line {n}: {problem}")
        pairs.append({c: row[c] for c in PAIR_COLUMNS})
    if not pairs:
        raise ConfigError(f"{path}: {key} holds no pairs; expected JSON lines with {', '.join(PAIR_COLUMNS)}")
    return pairs


def _pair_problem(row: dict) -> str | None:
    missing = [c for c in PAIR_COLUMNS if c not in row]
    if missing:
        return f"missing {', '.join(missing)} (has {', '.join(row) or 'nothing'})"
    for c in ("chosen", "rejected"):
        if not isinstance(row[c], str) or not row[c].strip():
            return f"{c} must be a non-empty text, got {row[c]!r}"
    if not isinstance(row["prompt"], (str, list)):
        return f"prompt must be a text or a list of chat messages, got {type(row['prompt']).__name__}"
    if row["chosen"] == row["rejected"]:
        return "chosen and rejected are the same text"
    return None


def split_pairs(pairs: list[dict], held_out_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out) by prompt, so no held-out prompt is trained on."""
    prompts = list(dict.fromkeys(json.dumps(p["prompt"]) for p in pairs))
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: max(1, round(held_out_fraction * len(prompts)))])
    train = [p for p in pairs if json.dumps(p["prompt"]) not in held]
    return train, [p for p in pairs if json.dumps(p["prompt"]) in held]
