"""Evaluation: greedy accuracy, and pass@1 / pass@k from samples, on an environment's split.

A sample is correct when the environment's first reward function (its correctness
check) gives it at least 1. pass@k is the fraction of problems with at least one
correct answer among k samples; pass@1 the mean correctness of all samples. Both come
from the same k samples per problem, so pass@1 < pass@k shows answers the model can
sample but does not prefer: the room RL has to work with.

`thoughts: shuffled` is the control that says whether a policy uses what its thoughts carry:
each answer is generated from another prompt's thoughts (those of the next prompt of its
batch, computed in that prompt's own context). A policy whose shuffled accuracy equals its
own ignores the content of its thoughts.
"""

from __future__ import annotations

import datasets
import torch
from tqdm.auto import tqdm

from envs import Environment, load_split
from rewards.combine import compute_rewards
from rl.errors import ConfigError
from rl.policy import NeuralesePolicy
from rl.rollout import complete, generate_rollout


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
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    bar = tqdm(total=len(prompts) * (1 + samples), desc="eval", unit="answer", disable=not progress)

    texts, positions = [], []
    for start, end in batches(len(prompts), batch_size, thoughts == "shuffled"):
        chunk = prompts[start:end]
        if thoughts == "shuffled":
            t, p = shuffled_answers(policy, chunk, max_new_tokens)
        else:
            t, p = complete(policy, chunk, max_new_tokens, 0.0, batch_size, generator)
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
    if thoughts != "own":
        result["thoughts"] = thoughts
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


def batches(n: int, batch_size: int, pairs: bool = False) -> list[tuple[int, int]]:
    """(start, end) of each batch of `n` prompts; with `pairs` (the shuffled control, where a prompt
    reads another's thoughts) no batch holds a lone prompt: a last one joins the batch before."""
    starts = list(range(0, n, batch_size))
    if pairs:
        if n < 2 or batch_size < 2:
            raise ConfigError(
                f"thoughts 'shuffled' (--thoughts shuffled) answers each prompt from another prompt's "
                f"thoughts in its batch: it needs at least 2 problems (n={n}) and a batch size of at least 2 "
                f"(batch_size={batch_size})"
            )
        if n - starts[-1] == 1:
            starts.pop()
    return list(zip(starts, [*starts[1:], n]))


@torch.no_grad()
def shuffled_answers(policy: NeuralesePolicy, prompts: list, max_new_tokens: int) -> tuple[list[str], list[int]]:
    """Greedy answers where prompt i reads the thoughts prompt i+1 (cyclically) had in its own answer."""
    if not policy.feedback_on or len(prompts) < 2:
        raise ValueError("the shuffled control needs a policy with thoughts and at least 2 prompts per batch")
    ids, mask = policy.encode(prompts)
    own = generate_rollout(policy, ids, mask, max_new_tokens, 0.0)
    steps = own.thoughts[:, own.prompt_length :]  # [B, G, D]: the thought drawn at each generated step
    ro = generate_rollout(policy, ids, mask, max_new_tokens, 0.0, thoughts=steps.roll(-1, dims=0))
    return policy.decode(ro), ro.generated_positions.tolist()
