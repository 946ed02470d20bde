"""Evaluation: greedy accuracy, and pass@1 / pass@k from samples, on an environment's split.

A sample is correct when the environment's correctness check (its `check`, else its first
reward function: neuralese.envs.correctness_check) gives it at least 1. pass@k is the fraction of problems with at least one
correct answer among k samples; pass@1 the mean correctness of all samples. Both come
from the same k samples per problem, so pass@1 < pass@k shows answers the model can
sample but does not prefer: the room RL has to work with. `pass_at` lists the unbiased pass@j for
j = 1..k (Chen et al. 2021), the curve a single continuous answer is set against.

`thoughts: shuffled` is the control that says whether a policy uses what its thoughts carry:
each answer is generated from another prompt's thoughts (those of the next prompt of its
batch, computed in that prompt's own context). A policy whose shuffled accuracy equals its
own ignores the content of its thoughts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from neuralese.config import EvalConfig, RunConfig
from neuralese.curriculum import Curriculum
from neuralese.envs import Environment, correctness_check, load_split
from neuralese.errors import ConfigError
from neuralese.policy import NeuralesePolicy
from neuralese.rewards.combine import compute_rewards
from neuralese.rollout import extend_columns


@dataclass
class Task:
    """What a policy is evaluated on: a run's test problems and its `eval` settings. Folders record the
    task they were trained on (neuralese.load.task_of), so `eval` and `inspect` take their defaults from it."""

    env: str
    """The environment (a built-in name or a plug-in reference, its path absolute)."""
    env_args: dict[str, Any]
    """The factory's arguments."""
    split: str
    """The split evaluated (`env.test_split`)."""
    eval: EvalConfig
    """Problems, batch size, samples, temperature and answer budget of the run's evaluation."""
    seed: int
    """The seed the run drew its evaluation problems with (`data_seed`, else `seed`)."""


def run_task(cfg: RunConfig, curriculum: Curriculum | None = None, sampled: bool = True) -> Task:
    """A run's task; its answer budget that of the curriculum's stage, when given; greedy answers only
    (no `eval.samples`) unless `sampled`."""
    evaluation = cfg.eval if sampled else dataclasses.replace(cfg.eval, samples=0)
    if curriculum is not None:
        evaluation = dataclasses.replace(
            evaluation, max_new_tokens=curriculum.budget(evaluation.max_new_tokens)
        )
    seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    return Task(cfg.env.name, cfg.env.args, cfg.env.test_split, evaluation, seed)


def task_record(task: Task) -> dict[str, Any]:
    """A task as plain data, for the folders that outlive a run (exported, as-is): `task_of` reads it back."""
    return dataclasses.asdict(task)


def evaluate_task(policy: NeuralesePolicy, env: Environment, task: Task, **kw) -> dict:
    """`evaluate` on a task: its split, problems, seed and every setting of its `eval` section
    (`progress` and `thoughts` as keywords)."""
    e = task.eval
    return evaluate(
        policy,
        env,
        task.split,
        e.n,
        task.seed,
        e.batch_size,
        e.max_new_tokens,
        e.samples,
        e.temperature,
        task.env,
        **kw,
    )


def correct(
    env: Environment,
    rows: datasets.Dataset,
    completions: list[str],
    repeat: int = 1,
    extras: dict[str, list] | None = None,
) -> torch.Tensor:
    """[N * repeat] bool: each completion scored by the env's correctness check (`correctness_check`).

    `extras`: per-completion columns beside the dataset's (`Rollout.reward_columns`), which every
    reward function receives in training too."""
    columns = {c: [v for v in rows[c] for _ in range(repeat)] for c in rows.column_names if c != "prompt"}
    columns.update(extras or {})
    prompts = [p for p in rows["prompt"] for _ in range(repeat)]
    total, _ = compute_rewards([correctness_check(env)], [1.0], prompts, completions, columns)
    return total >= 1.0


def evaluate(
    policy: NeuralesePolicy,
    env: Environment,
    split: str = "test",
    n: int = 200,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int = 32,
    samples: int = 0,
    temperature: float = 1.0,
    env_name: str = "env",
    progress: bool = True,
    thoughts: str = "own",
) -> dict:
    """Metrics of `policy` on `n` problems of `split` (the JSON line `neuralese eval` prints).

    thoughts: `own`, or `shuffled` (greedy answers from another prompt's thoughts; see the module docstring).
    """
    if thoughts not in ("own", "shuffled"):
        raise ValueError(f"thoughts must be 'own' or 'shuffled', got {thoughts!r}")
    if thoughts == "shuffled" and not policy.feedback_on:
        raise ConfigError(
            "thoughts 'shuffled' (--thoughts shuffled): this policy has neuralese mode 'off' (a plain model "
            "folder, or a run without feedback), so it has no thoughts to shuffle"
        )
    rows = load_split(env, split, n, seed, env_name)
    prompts = list(rows["prompt"])
    if thoughts == "shuffled" and min(len(prompts), batch_size) < 2:
        raise ConfigError(
            f"thoughts 'shuffled' (--thoughts shuffled) answers each prompt from another prompt's "
            f"thoughts in its batch: it needs at least 2 problems (n={len(prompts)}) and a batch size of at "
            f"least 2 (batch_size={batch_size})"
        )
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    bar = tqdm(total=len(prompts) * (1 + samples), desc="eval", unit="answer", disable=not progress)

    if thoughts == "shuffled":
        texts, extras = answer_all(
            prompts, batch_size, bar, lambda c: shuffled_answers(policy, c, max_new_tokens), 2
        )
    else:
        texts, extras = answer_all(
            prompts, batch_size, bar, lambda c: policy.complete(c, max_new_tokens, 0.0, batch_size, generator)
        )
    greedy = correct(env, rows, texts, extras=extras)
    positions = extras["generated_positions"]
    result = {
        "accuracy": round(greedy.float().mean().item(), 4),
        "n": len(prompts),
        "mean_generated_positions": round(sum(positions) / len(positions), 3),
        "split": split,
    }
    if thoughts != "own":
        result["thoughts"] = thoughts
    if samples > 0:
        result.update(
            sampled_metrics(
                policy, env, rows, samples, temperature, max_new_tokens, batch_size, generator, bar
            )
        )
    bar.close()
    return result


def sampled_metrics(
    policy, env, rows, samples, temperature, max_new_tokens, batch_size, generator, bar
) -> dict:
    """pass@1 and pass@k from `samples` answers a prompt at `temperature`."""
    prompts = list(rows["prompt"])
    repeated = [p for p in prompts for _ in range(samples)]
    sampled, extras = answer_all(
        repeated,
        batch_size,
        bar,
        lambda c: policy.complete(c, max_new_tokens, temperature, batch_size, generator),
    )
    hits = correct(env, rows, sampled, repeat=samples, extras=extras).view(len(prompts), samples)  # [N, k]
    return {
        "pass_at_1": round(hits.float().mean().item(), 4),
        "pass_at_k": round(hits.any(-1).float().mean().item(), 4),
        "k": samples,
        "temperature": temperature,
        "pass_at": [round(pass_at_k(hits, k), 4) for k in range(1, samples + 1)],  # unbiased, k = 1..samples
    }


def pass_at_k(hits: torch.Tensor, k: int) -> float:
    """Unbiased pass@k from n >= k samples a problem (Chen et al. 2021): [N, n] bool -> mean over N.

    >>> pass_at_k(torch.tensor([[True, False], [False, False]]), 1)
    0.25
    """
    n = hits.shape[-1]
    c = hits.sum(-1).tolist()
    # 1 - C(n - c, k) / C(n, k): the chance that k of the n samples, drawn without replacement, hold a hit
    values = [1.0 if n - ci < k else 1.0 - math.comb(n - ci, k) / math.comb(n, k) for ci in c]
    return sum(values) / len(values)


def answer_all(
    prompts: list, batch_size: int, bar, answer, least: int = 1
) -> tuple[list[str], dict[str, list]]:
    """`answer(batch) -> (texts, reward columns)` over `prompts` in batches, joined, with the bar moved on."""
    texts, extras = [], {}
    for chunk in batches(prompts, batch_size, least):
        t, e = answer(chunk)
        texts += t
        extend_columns(extras, e)
        bar.update(len(t))
    return texts, extras


def batches(items: list, size: int, least: int = 1) -> list[list]:
    """`items` in consecutive batches of `size`; a last batch smaller than `least` joins the one before
    (the shuffled control swaps thoughts within a batch, so one prompt alone has none to read)."""
    cuts = list(range(0, len(items), size)) + [len(items)]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < least:
        del cuts[-2]
    return [items[a:b] for a, b in zip(cuts, cuts[1:])]


@torch.no_grad()
def shuffled_answers(
    policy: NeuralesePolicy, prompts: list, max_new_tokens: int
) -> tuple[list[str], dict[str, list]]:
    """Greedy answers where prompt i reads the thoughts prompt i+1 (cyclically) had in its own answer,
    and their reward columns (`Rollout.reward_columns`)."""
    if not policy.feedback_on or len(prompts) < 2:
        raise ValueError("the shuffled control needs a policy with thoughts and at least 2 prompts per batch")
    ids, mask = policy.encode(prompts)
    own = policy.rollout(ids, mask, max_new_tokens, 0.0)
    steps = own.thoughts[:, own.prompt_length :]  # [B, G, D]: the thought drawn at each generated step
    # Given thoughts cover every position an answer can reach: one that outlives all the batch's own
    # answers reads no thought there (zeros, as past the end of the answer it reads), never its own.
    budget = policy.mode.thought_positions + max_new_tokens
    steps = torch.nn.functional.pad(steps, (0, 0, 0, budget - steps.shape[1]))  # [B, budget, D]
    ro = policy.rollout(ids, mask, max_new_tokens, 0.0, thoughts=steps.roll(-1, dims=0))
    return policy.decode(ro), ro.reward_columns()
