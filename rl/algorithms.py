"""Advantages, KL and losses of the RL algorithms, as pure tensor functions.

Tensor in, tensor out, no module state: the trainer calls these in the order of one step
(rewards -> `group_advantages` or `gae` -> `policy_loss` (+ `value_loss`) -> backward; for RAFT,
rewards -> `keep_mask` -> `positive_loss` -> backward).

Where TRL's `GRPOTrainer` has the same quantity, the formula here is TRL's (advantages,
clipped surrogate, k3 KL, the `dapo`/`grpo`/`dr_grpo` aggregations and clip metrics);
`tests/test_trl_equivalence.py` checks loss and gradients against a real TRL trainer.

Shapes: N samples in a step (prompts x group size G), B sequences in a (micro-)batch,
T completion positions (right-padded; `mask` marks the positions that carry loss).

Gradient accumulation: a step's sequences may be split into micro-batches. Every loss
takes optional normalizers (`num_tokens`, `num_sequences`, `max_length`); given for the
whole step, the micro-batch losses sum to exactly the full-batch loss, and so do their
gradients, however the step is split and however each micro-batch is padded.
"""

from __future__ import annotations

from typing import Literal

import torch

Aggregation = Literal["token", "sequence", "dr_grpo"]


# ----------------------------------------------------------------------------- advantages


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Rewards [N] as [N/G, G], or a ValueError saying what was expected."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards of length {rewards.numel()} do not split into groups of {group_size}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite; a sample no reward applies to should get 0")
    return rewards.view(-1, group_size)  # [N/G, G]


def _std(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Unbiased std (Bessel: torch's default and TRL's `nanstd`); 0 for a single value, as in TRL."""
    if dim is None:
        return x.std() if x.numel() > 1 else x.new_zeros(())  # []
    if x.size(dim) > 1:
        return x.std(dim=dim, keepdim=True)
    return torch.zeros_like(x.narrow(dim, 0, 1))


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    baseline: Literal["mean", "loo"] = "mean",
    scale: Literal["group", "batch", "none"] = "group",
    eps: float = 1e-4,
) -> torch.Tensor:
    """Group-relative advantages: one scalar per sample, later broadcast over its tokens.

    `rewards` [N] holds N/G contiguous groups of G samples of the same prompt.

    - baseline `mean` (GRPO): A_i = r_i - mean_j r_j over the group.
    - baseline `loo` (RLOO): A_i = r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean_j r_j), so
      the baseline does not depend on the sample it scores.
    - scale `group`: A_i / (std_group(r) + eps); `batch`: A_i / (std_batch(r) + eps), the
      group mean still as baseline (PPO-Lite, TRL's `batch`); `none`: as is (Dr.GRPO).

    std is the unbiased (n-1) std of the rewards and eps = 1e-4 is added to it, not to the
    variance: exactly TRL's formula, so `mean` + any scale equals TRL's advantages. The
    paper's GRPO has no eps; TRL's keeps a zero-spread group at advantage 0, not 0/0.
    Scaling RLOO by the group std is our extension (TRL's RLOO whitens over the batch).
    """
    grouped = _grouped(rewards, group_size)  # [N/G, G]
    if baseline == "mean":
        base = grouped.mean(dim=1, keepdim=True)  # [N/G, 1]
    elif baseline == "loo":
        if group_size < 2:
            raise ValueError("the leave-one-out baseline needs groups of at least 2 samples")
        base = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)  # [N/G, G]
    else:
        raise ValueError(f"baseline must be 'mean' or 'loo', got {baseline!r}")
    advantages = grouped - base  # [N/G, G]
    if scale == "group":
        advantages = advantages / (_std(grouped, dim=1) + eps)  # [N/G, G] / [N/G, 1]
    elif scale == "batch":
        advantages = advantages / (_std(rewards) + eps)  # [N/G, G] / []
    elif scale != "none":
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    return advantages.reshape(-1)  # [N]


def zero_spread_fraction(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Fraction of groups whose rewards are all equal (their advantages are all 0): a scalar.

    Same test as TRL's `frac_reward_zero_std` (`isclose(std, 0)`), but always per group:
    with `scale_rewards: batch` TRL tests the batch std instead, so its metric is 0 or 1.
    """
    grouped = _grouped(rewards, group_size)  # [N/G, G]
    std = _std(grouped, dim=1)  # [N/G, 1]
    return torch.isclose(std, torch.zeros_like(std)).float().mean()  # []


def keep_mask(
    rewards: torch.Tensor, group_size: int, min_reward: float | None, top_k: int | None
) -> torch.Tensor:
    """RAFT's filter: which samples a positive-only step learns from, [N] bool.

    `rewards` [N] holds N/G contiguous groups of G samples of the same prompt. A sample is kept
    when its reward is at least `min_reward` (None: no threshold) and, with `top_k`, it is among
    the k highest rewards of its group (ties go to the earlier sample, so the choice is
    deterministic). `min_reward` alone is rejection sampling (ReST-EM, STaR: the right answers);
    `top_k=1` alone is RAFT's best of each group, right or not.
    """
    grouped = _grouped(rewards, group_size)  # [N/G, G]
    if min_reward is None and top_k is None:
        raise ValueError("keep_mask needs min_reward, top_k or both: without them every sample is kept")
    keep = torch.ones_like(grouped, dtype=torch.bool)  # [N/G, G]
    if min_reward is not None:
        keep &= grouped >= min_reward
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        # Stable sort: among equal rewards the earlier sample ranks first.
        order = torch.sort(grouped, dim=1, descending=True, stable=True).indices  # [N/G, G]
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(group_size).expand_as(order))
        keep &= rank < top_k  # [N/G, G]
    return keep.reshape(-1)  # [N]


# ----------------------------------------------------------------------------- masked helpers


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` [B, T] over the positions where `mask` [B, T] is set; 0 where none is."""
    masked = torch.where(mask.bool(), x, 0.0)  # [B, T]
    count = mask.to(x.dtype)  # [B, T]
    if dim is None:
        return masked.sum() / count.sum().clamp(min=1.0)  # []
    return masked.sum(dim) / count.sum(dim).clamp(min=1.0)  # [B, T] reduced over dim


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked positions of `x` [B, T]; masked-out positions are 0.

    var is unbiased, as in verl and TRL's old PPO trainer. With `shift_mean=False` the mean
    is added back, so only the scale changes.
    """
    mean = masked_mean(x, mask)  # []
    count = mask.to(x.dtype).sum()  # []
    var = masked_mean((x - mean) ** 2, mask) * count / (count - 1).clamp(min=1.0)  # []
    whitened = (x - mean) * torch.rsqrt(var + eps)  # [B, T]
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, 0.0)  # [B, T]


# ----------------------------------------------------------------------------- KL and aggregation


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: Literal["k1", "k3"] = "k3"
) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from the sampled token's log-probs [B, T].

    k1 = log pi - log pi_ref (unbiased, can be negative).
    k3 = exp(d) - d - 1 with d = log pi_ref - log pi (Schulman's estimator; unbiased, always
    >= 0, lower variance): TRL's `per_token_kl`. Both are unbiased only on samples of pi;
    on the stale samples of a later PPO epoch they are estimates, as in TRL.
    """
    if estimator == "k1":
        return logprobs - ref_logprobs  # [B, T]
    if estimator == "k3":
        delta = ref_logprobs - logprobs  # [B, T]
        return torch.exp(delta) - delta - 1  # [B, T]
    raise ValueError(f"kl estimator must be 'k1' or 'k3', got {estimator!r}")


def _at_least_one(x: int | float | torch.Tensor) -> int | float | torch.Tensor:
    return x.clamp(min=1) if isinstance(x, torch.Tensor) else max(x, 1)


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: Aggregation,
    num_tokens: int | float | torch.Tensor | None = None,
    num_sequences: int | None = None,
    max_length: int | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss [B, T] to a scalar over the positions where `mask` [B, T] is set.

    - `token` (DAPO; TRL's `dapo`): sum(l * m) / num_tokens. Every token weighs the same,
      so long sequences are not diluted.
    - `sequence` (the GRPO paper; TRL's `grpo`): sum_b [sum_t(l * m) / |o_b|] / num_sequences,
      the mean of each sequence's own mean.
    - `dr_grpo` (Dr.GRPO; TRL's `dr_grpo`): sum(l * m) / (num_sequences * max_length), a
      constant normalizer with no length bias.

    The normalizers default to this batch: mask.sum(), B and T. For gradient accumulation
    pass them for the WHOLE step (the step's token count, its number of sequences, and for
    `dr_grpo` the generation limit, TRL's `max_completion_length`): then the losses of the
    micro-batches sum to the full-batch loss exactly, whatever the split (1 x 8 == 8 x 1)
    and whatever padding each micro-batch has. `sequence` needs only `num_sequences` for
    that, since each sequence's own length lies within its micro-batch. TRL reaches the same
    sums by dividing per-micro-batch means by the accumulation steps, which equals ours
    when micro-batches hold equal numbers of sequences. Under DDP, which averages gradients
    over P processes, pass the counts over all processes divided by P (TRL's `dapo` divides
    its global token count by P the same way); the average is then the global loss.

    Masked-out positions are selected away, not multiplied by 0, so an inf or NaN there
    does not make the loss NaN (its gradient still can: keep padded log-probs finite, 0 as
    in TRL). Normalizers are clamped at 1, as in TRL, so an empty batch gives 0.
    """
    if per_token.shape != mask.shape:
        raise ValueError(
            f"per_token {tuple(per_token.shape)} and mask {tuple(mask.shape)} must have the same shape"
        )
    keep = mask.bool()  # [B, T]
    masked = torch.where(keep, per_token, 0.0)  # [B, T]
    if mode == "token":
        denom = keep.sum().to(per_token.dtype) if num_tokens is None else num_tokens
        return masked.sum() / _at_least_one(denom)  # []
    n_seq = per_token.size(0) if num_sequences is None else num_sequences
    if mode == "sequence":
        lengths = keep.sum(dim=1).to(per_token.dtype).clamp(min=1.0)  # [B]
        return (masked.sum(dim=1) / lengths).sum() / _at_least_one(n_seq)  # []
    if mode == "dr_grpo":
        length = per_token.size(1) if max_length is None else max_length
        return masked.sum() / _at_least_one(n_seq * length)  # []
    raise ValueError(f"aggregation must be 'token', 'sequence' or 'dr_grpo', got {mode!r}")


# ----------------------------------------------------------------------------- policy loss


def add_kl(
    per_token: torch.Tensor,
    logprobs: torch.Tensor,
    ratio: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    beta: float,
    kl_estimator: Literal["k1", "k3"],
    kl_ratio_correction: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`per_token` [B, T] + beta * kl, and kl [B, T] (None without `ref_logprobs`): the KL to the
    reference, weighed by the ratio r [B, T] when `kl_ratio_correction` (see `policy_loss`)."""
    kl = None
    if ref_logprobs is not None:
        kl = kl_penalty(logprobs, ref_logprobs, kl_estimator)  # [B, T]
        if kl_ratio_correction:
            kl = kl * ratio  # [B, T]
    if beta != 0.0:
        if kl is None:
            raise ValueError("beta != 0 needs ref_logprobs")
        per_token = per_token + beta * kl  # [B, T]
    return per_token, kl


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
    aggregation: Aggregation,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: Literal["k1", "k3"] = "k3",
    kl_ratio_correction: bool = True,
    num_tokens: int | float | torch.Tensor | None = None,
    num_sequences: int | None = None,
    max_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate (PPO / GRPO), plus beta * KL to the reference, aggregated to a scalar.

    Per token, with r = exp(log pi - log pi_old) and A the advantage:
        l = -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A) + beta * r * kl
    then `aggregate(l, mask, aggregation, ...)` (see there for the normalizers).

    `logprobs` [B, T] carry gradient; `old_logprobs`, `ref_logprobs` [B, T] are constants.
    `advantages` is [B] (one per sequence, GRPO/RLOO) or [B, T] (per token, PPO). The
    ratio is per token (TRL's `importance_sampling_level="token"`). As in the GRPO paper and
    TRL (and unlike RLHF's PPO, which subtracts the KL from the reward), the KL is a loss
    term, aggregated like the surrogate. The KL is computed, and logged, whenever `ref_logprobs` is given;
    it enters the loss only when beta != 0.

    `kl_ratio_correction` (TRL's `use_bias_correction_kl`, on by default there and here)
    weighs the KL by the ratio r, WITH its gradient: the tokens were sampled from pi_old,
    and E_old[r * kl] is the KL of the current policy (DeepSeek-V3.2). This changes the
    KL gradient even on-policy, where r == 1 in value but not in derivative. Off, the
    KL term is the GRPO paper's beta * kl.

    Metrics (detached scalars, means over this batch's masked tokens, TRL's names):
    `clip_ratio/low_mean` (r < 1 - eps_low where A < 0: the clip binds from below),
    `clip_ratio/high_mean` (r > 1 + eps_high where A > 0), `clip_ratio/region_mean` (either),
    `ratio/mean`, and `kl` (ratio-corrected if asked, as TRL logs it) when `ref_logprobs` is given.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # [B, 1]
    if logprobs.shape != old_logprobs.shape or advantages.size(0) != logprobs.size(0):
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and "
            f"advantages {tuple(advantages.shape)} must agree on [B, T]"
        )
    ratio = torch.exp(logprobs - old_logprobs)  # [B, T]
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # [B, T]
    per_token = -torch.min(ratio * advantages, clipped * advantages)  # [B, T]
    per_token, kl = add_kl(per_token, logprobs, ratio, ref_logprobs, beta, kl_estimator, kl_ratio_correction)
    loss = aggregate(per_token, mask, aggregation, num_tokens, num_sequences, max_length)  # []
    with torch.no_grad():
        low = (ratio < 1 - epsilon_low) & (advantages < 0)  # [B, T]
        high = (ratio > 1 + epsilon_high) & (advantages > 0)  # [B, T]
        metrics = {
            "clip_ratio/low_mean": masked_mean(low.to(ratio.dtype), mask),
            "clip_ratio/high_mean": masked_mean(high.to(ratio.dtype), mask),
            "clip_ratio/region_mean": masked_mean((low | high).to(ratio.dtype), mask),
            "ratio/mean": masked_mean(ratio, mask),
        }
        if kl is not None:
            metrics["kl"] = masked_mean(kl, mask)
    return loss, metrics


def positive_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    keep: torch.Tensor,
    mask: torch.Tensor,
    *,
    aggregation: Aggregation,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: Literal["k1", "k3"] = "k3",
    kl_ratio_correction: bool = True,
    num_tokens: int | float | torch.Tensor | None = None,
    num_sequences: int | None = None,
    max_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """RAFT / expert iteration: the negative log-likelihood of the kept samples (+ beta * KL on them).

    Per token of a kept sample: l = -log pi (+ beta * r * kl, r = exp(log pi - log pi_old) with
    `kl_ratio_correction`, as in `policy_loss`), aggregated over the positions where `mask` is set
    in the rows `keep` [B] (bool, or weights > 0) marks. Samples that are not kept add nothing, not
    even to the KL: a step that keeps none has loss 0 and gradient 0 (never 0/0), and the trainer
    takes no optimizer step for it. `logprobs` [B, T] (token plus sampled thought, the policy's
    log-probability: with gradient through the latent chain, every thought on the path of a kept
    answer is pushed to make it likelier); `old_logprobs`, `ref_logprobs` [B, T] are constants.

    Normalizers as in `aggregate`, but counting the KEPT tokens and sequences of the whole step:
    the loss is a mean over what was kept, so a step that keeps 3 answers takes an update as large
    as one that keeps 300 (the supervised fine-tuning of ReST-EM and RAFT). Unlike `policy_loss`
    there is no ratio clip: the samples are demonstrations to imitate, on-policy or from the
    round's pool.

    Metrics (detached, over kept tokens of this batch): `nll` (mean -log pi) and `kl` when
    `ref_logprobs` is given.
    """
    if (
        logprobs.shape != old_logprobs.shape
        or logprobs.shape != mask.shape
        or keep.shape != logprobs.shape[:1]
    ):
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)}, mask "
            f"{tuple(mask.shape)} must agree on [B, T] and keep {tuple(keep.shape)} on [B]"
        )
    kept = mask.bool() & (keep > 0).unsqueeze(1)  # [B, T]
    ratio = torch.exp(logprobs - old_logprobs)  # [B, T]
    per_token, kl = add_kl(-logprobs, logprobs, ratio, ref_logprobs, beta, kl_estimator, kl_ratio_correction)
    if num_sequences is None:  # this batch's kept sequences, not its rows
        num_sequences = kept.any(dim=1).sum()
    loss = aggregate(per_token, kept, aggregation, num_tokens, num_sequences, max_length)  # []
    with torch.no_grad():
        metrics = {"nll": masked_mean(-logprobs, kept)}
        if kl is not None:
            metrics["kl"] = masked_mean(kl, kept)
    return loss, metrics


# ----------------------------------------------------------------------------- PPO: GAE and value loss


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over the masked positions of each sequence.

    With t' the next masked position after t (none past the end: V = 0, the episode ends):
        delta_t = r_t + gamma * V_t' - V_t
        A_t = delta_t + gamma * lam * A_t'
        R_t = A_t + V_t  (the value target)
    `rewards`, `values`, `mask` are [B, T]; the trainer puts the sequence reward on the last
    masked position. Masked-out positions are skipped as if absent: their reward and value
    never enter, and a hole inside a sequence (a tool's output, say) does not cut the chain.
    This is verl's formulation; for right-padded sequences it is the textbook GAE.
    Returns (advantages [B, T], returns [B, T]), both 0 at masked-out positions, both
    detached: they are targets, not functions of the weights.
    """
    rewards, values = rewards.detach(), values.detach()
    keep = mask.to(values.dtype)  # [B, T]
    next_value = torch.zeros_like(values[:, 0])  # [B]
    next_advantage = torch.zeros_like(values[:, 0])  # [B]
    advantages = torch.zeros_like(values)  # [B, T]
    for t in reversed(range(values.size(1))):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # [B]
        advantage = delta + gamma * lam * next_advantage  # [B]
        # A masked-out position passes the next valid position's value and advantage through.
        next_value = keep[:, t] * values[:, t] + (1 - keep[:, t]) * next_value  # [B]
        next_advantage = keep[:, t] * advantage + (1 - keep[:, t]) * next_advantage  # [B]
        advantages[:, t] = keep[:, t] * advantage  # [B]
    returns = (advantages + values) * keep  # [B, T]
    return advantages, returns


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float | None,
    aggregation: Aggregation,
    num_tokens: int | float | torch.Tensor | None = None,
    num_sequences: int | None = None,
    max_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss, aggregated like the policy loss.

    Per token: 0.5 * max((v - R)^2, (v_old + clip(v - v_old, -c, c) - R)^2), the PPO2 /
    verl form: the value may not buy a lower loss by moving more than c from the value
    that collected the data. `clip=None` gives the plain 0.5 * (v - R)^2.
    `values` [B, T] carry gradient; `old_values`, `returns` [B, T] are constants.

    Metrics (detached, means over masked tokens): `value/clip_frac` (the clipped branch
    is the larger one), `value/mean`, `value/explained_variance` (1 - Var(R - v) / Var(R)).
    """
    if not (values.shape == old_values.shape == returns.shape == mask.shape):
        raise ValueError(
            f"values {tuple(values.shape)}, old_values {tuple(old_values.shape)}, returns "
            f"{tuple(returns.shape)} and mask {tuple(mask.shape)} must have the same shape [B, T]"
        )
    unclipped = (values - returns) ** 2  # [B, T]
    if clip is None:
        per_token = 0.5 * unclipped  # [B, T]
        clipped_wins = torch.zeros_like(values, dtype=torch.bool)  # [B, T]
    else:
        v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)  # [B, T]
        clipped = (v_clipped - returns) ** 2  # [B, T]
        per_token = 0.5 * torch.max(unclipped, clipped)  # [B, T]
        clipped_wins = clipped > unclipped  # [B, T]
    loss = aggregate(per_token, mask, aggregation, num_tokens, num_sequences, max_length)  # []
    with torch.no_grad():
        residual = returns - values  # [B, T]
        var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)  # []
        var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)  # []
        metrics = {
            "value/clip_frac": masked_mean(clipped_wins.to(values.dtype), mask),
            "value/mean": masked_mean(values, mask),
            "value/explained_variance": 1 - var_residual / var_returns.clamp(min=1e-8),
        }
    return loss, metrics
