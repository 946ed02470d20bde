"""Diagnostics of an arm's final policy: does the thought matter (accuracy with the gate closed, with
another prompt's thoughts), is it loud next to the token, does it vary along the chain and across
prompts, and what it costs in memory. docs/ablation.md explains how to read them.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from neuralese.ablate.arms import Arm
from neuralese.ablate.stage0 import evaluate_policy
from neuralese.config import RunConfig
from neuralese.envs import load_split, make_env
from neuralese.inspector import inspect_thoughts
from neuralese.load import load_policy
from neuralese.memory import recompute_memory
from neuralese.policy import NeuralesePolicy

DIAG_PROMPTS = 16  # evaluation prompts the thought statistics are averaged over


def diagnose(run: Path, cfg: RunConfig, arm: Arm) -> dict:
    """The diagnostics of the run's final policy (module docstring)."""
    policy = load_policy(run)
    if not policy.feedback_on:
        return {"saved_mib": saved_mib(policy, cfg)}
    out = {}
    if "shuffled" in arm.controls:
        out["accuracy_shuffled"] = evaluate_policy(policy, cfg, thoughts="shuffled")["accuracy"]
    if cfg.neuralese.input == "gated_sum":  # a latent_only input has no gate to close
        gate_logit = policy.adapter.gate_logit
        kept = gate_logit.detach().clone()
        with torch.no_grad():
            gate_logit.zero_()  # tanh(0) = 0: the thought positions stay, their content is gone
        out["accuracy_gate_closed"] = evaluate_policy(policy, cfg)["accuracy"]
        with torch.no_grad():
            gate_logit.copy_(kept)
    return {**out, **thought_stats(policy, cfg), "saved_mib": saved_mib(policy, cfg)}


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def thought_stats(policy: NeuralesePolicy, cfg: RunConfig) -> dict:
    """Thought statistics of greedy answers to DIAG_PROMPTS evaluation prompts: neuralese.inspector's
    cosine to the previous thought and |g*f|/|e| (and the means of the mode's own columns, with the
    mode's weight statistics: channel mode's retention), and the cosine between the same thought of
    different prompts (a thought that is the same for every input carries nothing)."""
    env = make_env(cfg.env.name, cfg.env.args)
    prompts = list(load_split(env, cfg.env.test_split, DIAG_PROMPTS, cfg.seed, cfg.env.name)["prompt"])
    consecutive, loudness, columns = [], [], {}
    for prompt in prompts:
        for th in inspect_thoughts(policy, prompt, cfg.eval.max_new_tokens).thoughts:
            if th.thought_to_token is not None:  # None without a gate (latent_only): the thought is the input
                loudness.append(th.thought_to_token)
            if th.cosine_prev is not None:
                consecutive.append(th.cosine_prev)
            for name, value in th.columns.items():  # the mode's own (channel |s| and kept, refine Δpass)
                if value is not None:
                    columns.setdefault(name, []).append(value)
    return {
        "cos_consecutive": _mean(consecutive),
        "cos_across_prompts": cosine_across_prompts(policy, prompts, cfg.eval.max_new_tokens),
        "thought_to_token": _mean(loudness),
        "mode_columns": {
            **{name: _mean(values) for name, values in columns.items()},
            **policy.mode.weight_stats(policy),
        },
    }


@torch.no_grad()
def cosine_across_prompts(policy: NeuralesePolicy, prompts: list, max_new_tokens: int) -> float | None:
    """Mean cosine between the same thought (same index) of different prompts' greedy answers, over the
    depth every answer reaches; None with fewer than two prompts or no thought."""
    ids, mask = policy.encode(prompts)
    ro = policy.rollout(ids, mask, max_new_tokens, 0.0)
    chains = [F.normalize(ro.feedback[b][ro.feedback_mask[b]], dim=-1) for b in range(len(prompts))]
    depth = min(len(c) for c in chains)
    if not depth or len(chains) < 2:
        return None
    units = torch.stack([c[:depth] for c in chains], dim=1)  # [depth, N, D]
    sims = units @ units.transpose(1, 2)  # [depth, N, N]
    n = sims.shape[-1]
    return float((sims.sum((1, 2)) - sims.diagonal(dim1=1, dim2=2).sum(-1)).mean() / (n * (n - 1)))


def saved_mib(policy: NeuralesePolicy, cfg: RunConfig) -> float:
    """MiB autograd saves for one micro-batch's log-prob recompute, every sequence at full length
    (ignore_eos) so that arms differ only in mode and window: the memory the window changes.
    On CUDA, the allocator's peak over the recompute and backward instead (neuralese.memory)."""
    rl = cfg.rl
    n = min(rl.micro_batch_per_device, rl.prompts_per_step * rl.samples_per_prompt)
    env = make_env(cfg.env.name, cfg.env.args)
    rows = load_split(env, "train", math.ceil(n / rl.samples_per_prompt), cfg.seed, cfg.env.name)
    prompts = [p for p in rows["prompt"] for _ in range(rl.samples_per_prompt)][:n]
    ids, mask = policy.encode(prompts)
    generator = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    ro = policy.rollout(ids, mask, rl.max_new_tokens, rl.temperature, generator, ignore_eos=True)
    return recompute_memory(policy.train(), ro, cfg.neuralese.tbptt_window) / 2**20
