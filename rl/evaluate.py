"""Evaluation: greedy accuracy, and pass@1 / pass@k from samples, on an environment's split.

A sample is correct when the environment's first reward function (its correctness
check) gives it at least 1. pass@k is the fraction of problems with at least one
correct answer among k samples; pass@1 the mean correctness of all samples. Both come
from the same k samples per problem, so pass@1 < pass@k shows answers the model can
sample but does not prefer: the room RL has to work with.
"""

from __future__ import annotations

import datasets
import torch
from tqdm.auto import tqdm

from envs import Environment, load_split
from rewards.combine import compute_rewards
from rl.policy import NeuralesePolicy
from rl.rollout import complete


def correct(
    env: Environment, rows: datasets.Dataset, completions: list[str], repeat: int = 1
) -> torch.Tensor:
    """[N * repeat] bool: each completion scored by the env's correctness check (its first reward)."""
    columns = {c: [v for v in rows[c] for _ in range(repeat)] for c in rows.column_names if c != "prompt"}
    prompts = [p for p in rows["prompt"] for _ in range(repeat)]
    total, _ = compute_rewards(env.reward_funcs[:1], [1.0], prompts, completions, columns)
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
) -> dict:
    """Metrics of `policy` on `n` problems of `split` (the JSON line `neuralese eval` prints)."""
    rows = load_split(env, split, n, seed, env_name)
    prompts = list(rows["prompt"])
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    bar = tqdm(total=len(prompts) * (1 + samples), desc="eval", unit="answer", disable=not progress)

    texts, positions = [], []
    for start in range(0, len(prompts), batch_size):
        t, p = complete(
            policy, prompts[start : start + batch_size], max_new_tokens, 0.0, batch_size, generator
        )
        texts += t
        positions += p
        bar.update(len(t))
    greedy = correct(env, rows, texts)
    result = {
        "accuracy": round(greedy.float().mean().item(), 4),
        "n": len(prompts),
        "mean_generated_positions": round(sum(positions) / len(positions), 3),
        "split": split,
    }
    if samples > 0:
        repeated = [p for p in prompts for _ in range(samples)]
        sampled = []
        for start in range(0, len(repeated), batch_size):
            t, _ = complete(
                policy,
                repeated[start : start + batch_size],
                max_new_tokens,
                temperature,
                batch_size,
                generator,
            )
            sampled += t
            bar.update(len(t))
        hits = correct(env, rows, sampled, repeat=samples).view(len(prompts), samples)  # [N, k]
        result.update(
            pass_at_1=round(hits.float().mean().item(), 4),
            pass_at_k=round(hits.any(-1).float().mean().item(), 4),
            k=samples,
            temperature=temperature,
        )
    bar.close()
    return result
