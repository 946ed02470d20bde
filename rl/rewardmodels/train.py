"""Training reward models here, and chaining them as gears.

Launch: `neuralese reward-model train RECIPE.yaml [--set reward_model.key=value ...] [--out DIR]`.

Gear 0 is trained with TRL's RewardTrainer (Bradley-Terry loss) on preference pairs: the
policy's own samples judged by the environment's check (`reward_model.prompts` train prompts),
or a pairs file. Gear k (`reward_model.gears`) is a fresh model trained on the labels gear k-1
gives to the policy's samples of more prompts: the knowledge of a few checked labels carried
across far more data, one gear turning the next. Every gear is measured on the same held-out
pairs (test-split prompts, labelled by the environment's check, never trained on).

Each gear is saved as a Hugging Face folder, `gear-K/`, then loaded back through the reward's
own code (neuralese.rewardmodels.score) to be measured: pairwise accuracy on the held-out pairs, the
AUC of its scores over held-out samples (right against wrong across prompts, which a pairwise
model is not trained for), its agreement with the gear before, and the calibration (a, b) with
sigmoid(a * logit + b) ~ p(right) that `calibrated: true` uses. `reward_model.json` in the folder
and `report.json` beside the gears hold these numbers.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoModelForSequenceClassification, set_seed
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import suppress_seqcls_warning

from neuralese.config import GearConfig, RewardModelConfig, RunConfig, validate
from neuralese.envs import env_texts, load_split, make_env
from neuralese.errors import ConfigError
from neuralese.io import atomic_dir, check_output_dir, write_json
from neuralese.models import check_model_folder, load_tokenizer
from neuralese.rewardmodels import pairs as P
from neuralese.rewardmodels.score import META_FILE, RewardModel, RewardModelArgs, sample_ids
from neuralese.tiny import build_tiny_model, build_tokenizer


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def new_model(rm: RewardModelConfig, texts: list[str], seed: int):
    """A one-logit sequence classifier and its tokenizer: from `rm.base`, or tiny from `texts`."""
    if rm.base is None:
        tokenizer = build_tokenizer(texts)
        model = build_tiny_model(tokenizer, rm.tiny, seed, AutoModelForSequenceClassification, num_labels=1)
        return model, tokenizer
    folder = check_model_folder(rm.base, "reward_model.base")
    tokenizer = load_tokenizer(folder)
    with suppress_seqcls_warning(), torch.random.fork_rng(devices=[]):  # a causal LM gets a new head, seeded
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(folder), num_labels=1, local_files_only=True, use_safetensors=True, dtype=torch.float32
        )
    return model, tokenizer


def fit(
    model, tokenizer, pairs: list[dict], rm: RewardModelConfig, max_steps: int, seed: int, work: Path
) -> list:
    """Train `model` on `pairs` with TRL's RewardTrainer; returns its log history."""
    data = datasets.Dataset.from_dict(
        {
            "chosen_ids": sample_ids(tokenizer, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]),
            "rejected_ids": sample_ids(
                tokenizer, [p["prompt"] for p in pairs], [p["rejected"] for p in pairs]
            ),
        }
    )  # tokenized as the reward scores: TRL takes a processed dataset as it is
    names = {f.name for f in dataclasses.fields(RewardConfig)}
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    )
    args = RewardConfig(
        **{checkpointing: False},
        output_dir=str(work),
        max_steps=max_steps,
        per_device_train_batch_size=rm.batch_size,
        learning_rate=rm.learning_rate,
        lr_scheduler_type=rm.lr_scheduler,
        warmup_steps=rm.warmup_steps,
        weight_decay=rm.weight_decay,
        center_rewards_coefficient=rm.center_rewards_coefficient or None,
        logging_steps=max(1, max_steps // 20),
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        max_length=None,
        dataloader_num_workers=0,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    return trainer.state.log_history


def pair_margins(scorer: RewardModel, pairs: list[dict]) -> torch.Tensor:
    """[P] score(chosen) - score(rejected) of every pair."""
    prompts = [p["prompt"] for p in pairs]
    chosen = scorer.logits(prompts, [p["chosen"] for p in pairs])
    rejected = scorer.logits(prompts, [p["rejected"] for p in pairs])
    return chosen - rejected


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    """P(score of a right sample > score of a wrong one), ties half; None without both kinds."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    diff = pos[:, None] - neg[None, :]  # [n_pos, n_neg]
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()


def calibrate(scores: torch.Tensor, labels: torch.Tensor) -> dict | None:
    """(a, b) of a logistic fit p(right) = sigmoid(a * score + b), lightly L2-regularised so that
    separable data keeps them finite; None without both kinds of label."""
    if labels.all() or not labels.any():
        return None
    x, y = scores.double(), labels.double()
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a * x + b, y) + 1e-4 * (a * a + b * b)
        loss.backward()
        return loss

    opt.step(closure)
    return {"scale": a.item(), "offset": b.item(), "samples": len(y)}


class HeldOut:
    """What every gear is measured on: labelled held-out pairs, and (from samples) labelled samples."""

    def __init__(
        self, pairs: list[dict], prompts: list | None = None, texts: list | None = None, labels=None
    ):
        if not pairs:
            raise ConfigError(
                "reward_model: no held-out pairs (with samples: every held-out prompt's were all right or all "
                "wrong; raise reward_model.held_out_prompts or reward_model.temperature)"
            )
        self.pairs, self.prompts, self.texts, self.labels = pairs, prompts, texts, labels

    def measure(self, scorer: RewardModel, previous: torch.Tensor | None) -> tuple[dict, torch.Tensor]:
        margins = pair_margins(scorer, self.pairs)
        out: dict[str, Any] = {
            "pairs": len(self.pairs),
            "pairwise_accuracy": (margins > 0).float().mean().item(),
        }
        if previous is not None:
            out["agreement_with_previous"] = ((margins > 0) == (previous > 0)).float().mean().item()
        if self.texts is not None:
            scores = scorer.logits(self.prompts, self.texts)
            out["samples_auc"] = auc(scores, self.labels)
            out["calibration"] = calibrate(scores, self.labels)
        else:  # a pairs file: chosen counts as right, rejected as wrong
            both = torch.cat([margins.new_ones(len(margins)), margins.new_zeros(len(margins))]).bool()
            prompts = [p["prompt"] for p in self.pairs] * 2
            texts = [p["chosen"] for p in self.pairs] + [p["rejected"] for p in self.pairs]
            out["calibration"] = calibrate(scorer.logits(prompts, texts), both)
        return out, margins


def save_gear(model, tokenizer, folder: Path, held_out: HeldOut, previous, meta: dict) -> tuple[dict, Any]:
    """Save, load back through the reward's own code, measure, and write reward_model.json."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        scorer = RewardModel(RewardModelArgs(path=str(tmp), batch_size=256), device=device())
        measured, margins = held_out.measure(scorer, previous)
        meta = {**meta, **measured}
        write_json(tmp / META_FILE, meta)
    return meta, margins


class Chain:
    """What one `neuralese reward-model train` shares across its gears: the environment, its prompts,
    the sampling policy, the held-out pairs and the output folder."""

    def __init__(self, cfg: RunConfig, load_policy: Callable[..., Any]):
        """`load_policy(folder, device=...)`: how the sampling policy is loaded (neuralese.load_policy)."""
        validate(cfg)
        self.cfg, rm = cfg, cfg.reward_model
        self.out = check_output_dir(
            rm.output_dir or Path(cfg.output_dir) / "reward-model", "reward_model.output_dir (--out)"
        )
        if rm.base is not None:  # before the policy samples: a wrong folder must not cost that time
            check_model_folder(rm.base, "reward_model.base")
        set_seed(cfg.seed)
        self.env = make_env(cfg.env.name, cfg.env.args)
        needed = rm.prompts + sum(g.prompts for g in rm.gears)
        self.train = load_split(self.env, "train", max(needed, cfg.env.train_size), cfg.seed, cfg.env.name)
        if len(self.train) < needed:
            raise ConfigError(
                f"reward_model: the gears need {needed} train prompts; the environment gave {len(self.train)}"
            )
        self.test = load_split(self.env, cfg.env.test_split, rm.held_out_prompts, cfg.seed, cfg.env.name)
        self.file_pairs = P.read_pairs(rm.pairs_file) if rm.pairs_file else None
        self.policy = None
        if self.file_pairs is None or rm.gears:
            self.policy = load_policy(rm.policy or cfg.model.path, device=device())
        self.texts = env_texts(self.train) + env_texts(self.test)  # the tiny tokenizer's vocabulary
        if self.file_pairs:
            sides = [
                {"prompt": p["prompt"], "answer": p["chosen"], "completion": p["rejected"]}
                for p in self.file_pairs
            ]
            self.texts += env_texts(datasets.Dataset.from_list(sides))

    def draw(self, rows: datasets.Dataset, seed: int) -> P.Samples:
        rm = self.cfg.reward_model
        return P.sample(self.policy, rows, rm.samples_per_prompt, rm.temperature, rm.max_new_tokens, seed)

    def first_pairs(self) -> tuple[list[dict], dict]:
        """Gear 0's pairs (the environment's check on the policy's samples, or the file's train part);
        sets the held-out pairs every gear is measured on."""
        rm, seed = self.cfg.reward_model, self.cfg.seed
        if self.file_pairs is not None:
            pairs, held_pairs = P.split_pairs(self.file_pairs, rm.held_out_fraction, seed)
            self.held_out = HeldOut(held_pairs)
            return pairs, {"labels": str(rm.pairs_file)}
        held = self.draw(self.test, seed + 1)
        labels = P.judge(self.env, held)
        self.held_out = HeldOut(
            P.labelled_pairs(held, labels, rm.pairs_per_prompt, seed),
            *held.flat()[:2],
            torch.tensor([y for g in labels for y in g]),
        )
        first = self.draw(self.train.select(range(rm.prompts)), seed)
        return P.labelled_pairs(first, P.judge(self.env, first), rm.pairs_per_prompt, seed), {
            "labels": "environment check"
        }

    def pool_pairs(self, k: int, gear: GearConfig, start: int) -> tuple[list[dict], dict]:
        """Gear k's pairs: gear k-1's ranking of the policy's samples of `gear.prompts` new prompts."""
        pool = self.draw(self.train.select(range(start, start + gear.prompts)), self.cfg.seed + 10 + k)
        scorer = RewardModel(
            RewardModelArgs(path=str(self.out / f"gear-{k - 1}"), batch_size=256), device=device()
        )
        prompts, completions, _ = pool.flat()
        scores = pool.regroup(scorer.logits(prompts, completions).tolist())
        pairs = P.ranked_pairs(pool, scores, self.cfg.reward_model.pairs_per_prompt, gear.min_margin)
        return pairs, {
            "labels": f"gear-{k - 1}",
            "pool_prompts": gear.prompts,
            **label_quality(self.env, pool, pairs),
        }

    def train_gear(
        self, k: int, pairs: list[dict], steps: int, meta: dict, previous
    ) -> tuple[dict, torch.Tensor]:
        """A fresh model trained on `pairs`, saved as gear-k and measured."""
        if not pairs:
            raise ConfigError(f"reward_model: gear {k} has no training pairs ({meta['labels']} made none)")
        rm, seed, t0 = self.cfg.reward_model, self.cfg.seed + k, time.perf_counter()
        model, tokenizer = new_model(rm, self.texts, seed)
        work = self.out / f".gear-{k}.trainer"  # TRL's output folder; nothing is saved there
        log = fit(model, tokenizer, pairs, rm, steps, seed, work)
        shutil.rmtree(work, ignore_errors=True)
        meta = {
            "gear": k,
            **meta,
            "train_pairs": len(pairs),
            "max_steps": steps,
            "train_s": round(time.perf_counter() - t0, 1),
            "final_loss": next((e["loss"] for e in reversed(log) if "loss" in e), None),
        }
        return save_gear(model, tokenizer, self.out / f"gear-{k}", self.held_out, previous, meta)


def train_reward_model(cfg: RunConfig, load_policy: Callable[..., Any]) -> Path:
    """Train gear 0 and every gear after it; returns the folder that holds them and report.json.
    `load_policy(folder, device=...)` loads the policy whose samples make the pairs (neuralese.load_policy:
    the command passes it in, so that reward models need nothing from the layer that builds runs)."""
    chain, rm = Chain(cfg, load_policy), cfg.reward_model
    pairs, meta = chain.first_pairs()
    meta, previous = chain.train_gear(0, pairs, rm.max_steps, meta, None)
    report, start = [meta], rm.prompts
    for k, gear in enumerate(rm.gears, 1):  # each gear labels a new, larger pool for the next
        pairs, meta = chain.pool_pairs(k, gear, start)
        start += gear.prompts
        meta, previous = chain.train_gear(k, pairs, gear.max_steps or rm.max_steps, meta, previous)
        report.append(meta)
    write_json(chain.out / "report.json", {"gears": report})
    return chain.out


def label_quality(env, pool: P.Samples, pairs: list[dict]) -> dict:
    """How right the previous gear's pairs are by the environment's check (measured, never trained on)."""
    labels = P.judge(env, pool)
    truth = {(str(p), t): y for p, g, ys in zip(pool.prompts, pool.groups, labels) for t, y in zip(g, ys)}
    right = wrong = 0
    for pair in pairs:
        c, r = truth[(str(pair["prompt"]), pair["chosen"])], truth[(str(pair["prompt"]), pair["rejected"])]
        right += c and not r
        wrong += r and not c
    decided = right + wrong
    return {
        "pairs_right_order": right / decided if decided else None,
        "pairs_tied_in_truth": 1 - decided / len(pairs) if pairs else None,
    }
