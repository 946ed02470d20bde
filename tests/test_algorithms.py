"""Hand-computed tests of the RL math in `rl/algorithms.py`.

Every expected value is worked out by hand in the comment next to it, never by running
the same formula again. float64 throughout, so the literals can be tight.
"""

from __future__ import annotations

import math

import pytest
import torch

from neuralese.algorithms import (
    aggregate,
    gae,
    group_advantages,
    kl_penalty,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
    zero_spread_fraction,
)

F64 = torch.float64


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows if len(rows) > 1 else rows[0], dtype=F64)


def close(actual: torch.Tensor, expected, atol: float = 1e-9) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# ----------------------------------------------------------------------------- advantages

# Two groups of G = 3. Group A [0, 3, 6]: mean 3, deviations [-3, 0, 3], unbiased var (9+0+9)/2 = 9, std 3.
# Group B [4, 2, 3]: mean 3, deviations [1, -1, 0], unbiased var (1+1+0)/2 = 1, std 1.
# Whole batch: mean 3, deviations [-3, 0, 3, 1, -1, 0], unbiased var (9+9+1+1)/5 = 4, std 2.
REWARDS = [0.0, 3.0, 6.0, 4.0, 2.0, 3.0]


def test_grpo_advantages_scale_by_each_groups_own_std():
    adv = group_advantages(t(REWARDS), 3, "mean", "group", eps=0.0)
    close(adv, [-1.0, 0.0, 1.0, 1.0, -1.0, 0.0])  # A: [-3, 0, 3] / 3; B: [1, -1, 0] / 1


def test_grpo_advantages_add_eps_to_the_std_as_trl_does():
    adv = group_advantages(t(REWARDS), 3)  # defaults: mean, group, eps 1e-4
    close(adv, [-3 / 3.0001, 0.0, 3 / 3.0001, 1 / 1.0001, -1 / 1.0001, 0.0])


def test_batch_scaling_keeps_the_group_mean_and_divides_by_the_batch_std():
    adv = group_advantages(t(REWARDS), 3, "mean", "batch", eps=0.0)
    close(adv, [-1.5, 0.0, 1.5, 0.5, -0.5, 0.0])  # deviations from the group mean / batch std 2


def test_dr_grpo_advantages_are_not_scaled():
    adv = group_advantages(t(REWARDS), 3, "mean", "none")
    close(adv, [-3.0, 0.0, 3.0, 1.0, -1.0, 0.0])


def test_rloo_baseline_is_the_mean_of_the_other_samples():
    adv = group_advantages(t(REWARDS), 3, "loo", "none")
    # A: 0 - (3+6)/2 = -4.5, 3 - (0+6)/2 = 0, 6 - (0+3)/2 = 4.5; B: 4 - (2+3)/2 = 1.5, 2 - 3.5 = -1.5, 3 - 3 = 0
    close(adv, [-4.5, 0.0, 4.5, 1.5, -1.5, 0.0])
    scaled = group_advantages(t(REWARDS), 3, "loo", "group", eps=0.0)
    close(scaled, [-1.5, 0.0, 1.5, 1.5, -1.5, 0.0])  # A / 3, B / 1


def test_zero_spread_groups_get_zero_advantage_and_are_counted():
    rewards = t([1.0, 1.0, 1.0, 0.0, 2.0, 1.0, 5.0, 5.0, 5.0, 0.0, 0.0, 1.0])
    adv = group_advantages(rewards, 3)
    assert torch.isfinite(adv).all()
    close(adv[0:3], [0.0, 0.0, 0.0])  # (1 - 1) / (0 + 1e-4), not 0/0
    close(adv[6:9], [0.0, 0.0, 0.0])
    close(zero_spread_fraction(rewards, 3), 0.5)  # groups [1,1,1] and [5,5,5] out of 4
    close(zero_spread_fraction(t([0.0, 1.0, 2.0, 3.0]), 2), 0.0)
    close(zero_spread_fraction(t([0.0, 1.0, 2.0, 3.0]), 1), 1.0)  # a group of one never spreads


def test_groups_of_one_give_zero_advantage():
    close(group_advantages(t([3.0, 5.0]), 1), [0.0, 0.0])  # std of one value is 0, as in TRL


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rewards": t([1.0, 2.0, 3.0]), "group_size": 2}, "groups of 2"),
        ({"rewards": t([1.0, math.nan]), "group_size": 2}, "finite"),
        ({"rewards": t([[1.0, 2.0]]), "group_size": 2}, "1-D"),
        ({"rewards": t([1.0, 2.0]), "group_size": 1, "baseline": "loo"}, "at least 2"),
        ({"rewards": t([1.0, 2.0]), "group_size": 2, "baseline": "median"}, "baseline"),
        ({"rewards": t([1.0, 2.0]), "group_size": 2, "scale": "std"}, "scale"),
    ],
)
def test_group_advantages_refuse_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_advantages(**kwargs)


# ----------------------------------------------------------------------------- KL


def test_kl_estimators():
    logp = torch.log(t([[0.5, 0.25, 0.3]]))
    ref = torch.log(t([[0.25, 0.5, 0.3]]))
    # k1 = log p - log ref: log 2, -log 2, 0
    close(kl_penalty(logp, ref, "k1"), [[math.log(2), -math.log(2), 0.0]])
    # k3 = exp(d) - d - 1, d = log ref - log p: d = -log 2 -> 0.5 + 0.693147 - 1 = 0.193147;
    # d = log 2 -> 2 - 0.693147 - 1 = 0.306853; d = 0 -> 0
    close(kl_penalty(logp, ref, "k3"), [[0.5 + math.log(2) - 1, 2 - math.log(2) - 1, 0.0]])
    with pytest.raises(ValueError, match="k2"):
        kl_penalty(logp, ref, "k2")


# ----------------------------------------------------------------------------- aggregation

PER_TOKEN = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
MASK = [[1, 1, 0], [1, 0, 0]]  # 3 loss tokens: 1, 2 and 4


def test_token_aggregation_is_the_mean_over_all_loss_tokens():
    close(aggregate(t(PER_TOKEN), torch.tensor(MASK), "token"), 7 / 3)  # (1 + 2 + 4) / 3
    close(aggregate(t(PER_TOKEN), torch.tensor(MASK), "token", num_tokens=14), 0.5)  # 7 / 14


def test_sequence_aggregation_is_the_mean_of_per_sequence_means():
    close(aggregate(t(PER_TOKEN), torch.tensor(MASK), "sequence"), 2.75)  # ((1+2)/2 + 4/1) / 2
    close(aggregate(t(PER_TOKEN), torch.tensor(MASK), "sequence", num_sequences=4), 1.375)  # 5.5 / 4


def test_dr_grpo_aggregation_divides_by_sequences_times_max_length():
    close(aggregate(t(PER_TOKEN), torch.tensor(MASK), "dr_grpo"), 7 / 6)  # 7 / (2 x 3)
    close(aggregate(t(PER_TOKEN), torch.tensor(MASK), "dr_grpo", max_length=7), 0.5)  # 7 / (2 x 7)
    close(aggregate(t(PER_TOKEN), torch.tensor(MASK), "dr_grpo", num_sequences=7, max_length=1), 1.0)


def test_aggregation_ignores_masked_positions_even_when_not_finite():
    per_token = t([[1.0, math.inf], [math.nan, 3.0]])
    mask = torch.tensor([[True, False], [False, True]])
    close(aggregate(per_token, mask, "token"), 2.0)  # (1 + 3) / 2
    close(aggregate(per_token, mask, "sequence"), 2.0)  # (1/1 + 3/1) / 2


def test_aggregation_of_an_empty_mask_is_zero():
    for mode in ("token", "sequence", "dr_grpo"):
        close(aggregate(t(PER_TOKEN), torch.zeros(2, 3), mode), 0.0)


def test_aggregation_refuses_bad_input():
    with pytest.raises(ValueError, match="token"):
        aggregate(t(PER_TOKEN), torch.tensor(MASK), "mean")
    with pytest.raises(ValueError, match="same shape"):
        aggregate(t(PER_TOKEN), torch.ones(2, 2), "token")


# ----------------------------------------------------------------------------- policy loss

# eps_low 0.2, eps_high 0.28: the ratio is clipped to [0.8, 1.28].
# seq 0, A = +1: r = 1.5 -> min(1.5, 1.28) = 1.28 (clipped high), loss -1.28
#                r = 0.5 -> min(0.5, 0.8) = 0.5 (unclipped: pessimistic), loss -0.5
# seq 1, A = -1: r = 0.5 -> min(-0.5, -0.8) = -0.8 (clipped low), loss 0.8
#                r = 1.5 -> min(-1.5, -1.28) = -1.5 (unclipped), loss 1.5
# seq 2, A = +2: r = 1.1 -> min(2.2, 2.2) = 2.2, loss -2.2; second position is padding
RATIOS = [[1.5, 0.5], [0.5, 1.5], [1.1, 1.0]]
ADVANTAGES = [1.0, -1.0, 2.0]
LOSS_MASK = [[1, 1], [1, 1], [1, 0]]
OLD_P = 0.4


def clipping_batch():
    old = torch.full((3, 2), math.log(OLD_P), dtype=F64)
    logp = torch.log(OLD_P * t(RATIOS)).requires_grad_()
    return logp, old, t(ADVANTAGES), torch.tensor(LOSS_MASK)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token", -1.68 / 5),  # (-1.28 - 0.5 + 0.8 + 1.5 - 2.2) / 5 tokens
        ("sequence", (-0.89 + 1.15 - 2.2) / 3),  # per-sequence means -1.78/2, 2.3/2, -2.2/1
        ("dr_grpo", -1.68 / 6),  # / (3 sequences x 2 positions)
    ],
)
def test_clipped_surrogate_on_both_sides(mode, expected):
    logp, old, adv, mask = clipping_batch()
    loss, metrics = policy_loss(logp, old, adv, mask, 0.2, 0.28, mode)
    close(loss, expected)
    close(metrics["clip_ratio/low_mean"], 0.2)  # seq 1 r = 0.5 with A < 0: 1 of 5 tokens
    close(metrics["clip_ratio/high_mean"], 0.2)  # seq 0 r = 1.5 with A > 0
    close(metrics["clip_ratio/region_mean"], 0.4)
    close(metrics["ratio/mean"], 1.02)  # (1.5 + 0.5 + 0.5 + 1.5 + 1.1) / 5
    assert "kl" not in metrics and not any(m.requires_grad for m in metrics.values())


def test_clipped_tokens_carry_no_gradient():
    logp, old, adv, mask = clipping_batch()
    loss, _ = policy_loss(logp, old, adv, mask, 0.2, 0.28, "token")
    loss.backward()
    # d(-r A)/d log p = -r A where unclipped, 0 where the clip binds; token mean / 5.
    # seq 0: clipped, -(0.5 x 1)/5 = -0.1; seq 1: clipped, -(1.5 x -1)/5 = 0.3; seq 2: -(1.1 x 2)/5 = -0.44, pad 0
    close(logp.grad, [[0.0, -0.1], [0.0, 0.3], [-0.44, 0.0]])


def test_per_token_advantages_broadcast_like_per_sequence_ones():
    logp, old, adv, mask = clipping_batch()
    per_seq, _ = policy_loss(logp, old, adv, mask, 0.2, 0.28, "token")
    per_tok, _ = policy_loss(logp, old, adv[:, None].expand(3, 2), mask, 0.2, 0.28, "token")
    close(per_tok, per_seq.item())


def test_kl_term_and_its_ratio_correction():
    # One on-policy token (r = 1, A = 0): p = 0.5, ref = 0.25, k3 = 0.193147 (see test_kl_estimators).
    logp = torch.log(t([[0.5]])).requires_grad_()
    old, ref, adv, mask = logp.detach().clone(), torch.log(t([[0.25]])), t([0.0]), torch.ones(1, 1)
    loss, metrics = policy_loss(logp, old, adv, mask, 0.2, 0.2, "token", ref_logprobs=ref, beta=0.1)
    close(loss, 0.1 * (math.log(2) - 0.5))  # beta x r x k3 with r = 1
    close(metrics["kl"], math.log(2) - 0.5)
    loss.backward()
    # d(r k3)/d log p = k3 dr/dlogp + r dk3/dlogp = k3 + (1 - exp(ref - logp)) = 0.193147 + 0.5 = log 2
    close(logp.grad, [[0.1 * math.log(2)]])

    logp.grad = None
    loss, _ = policy_loss(
        logp, old, adv, mask, 0.2, 0.2, "token", ref_logprobs=ref, beta=0.1, kl_ratio_correction=False
    )
    loss.backward()
    close(logp.grad, [[0.1 * 0.5]])  # without the ratio only dk3/dlogp = 1 - 0.5 remains

    loss, metrics = policy_loss(
        logp, old, adv, mask, 0.2, 0.2, "token", ref_logprobs=ref, beta=0.1, kl_estimator="k1"
    )
    close(loss, 0.1 * math.log(2))  # k1 = log 0.5 - log 0.25
    loss, metrics = policy_loss(logp, old, adv, mask, 0.2, 0.2, "token", ref_logprobs=ref, beta=0.0)
    close(loss, 0.0)  # with beta 0 the KL is logged, not added
    close(metrics["kl"], math.log(2) - 0.5)


def test_policy_loss_refuses_bad_input():
    logp, old, adv, mask = clipping_batch()
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(logp, old, adv, mask, 0.2, 0.2, "token", beta=0.1)
    with pytest.raises(ValueError, match="must agree"):
        policy_loss(logp, old[:, :1], adv, mask, 0.2, 0.2, "token")
    with pytest.raises(ValueError, match="must agree"):
        policy_loss(logp, old, adv[:2], mask, 0.2, 0.2, "token")


# ----------------------------------------------------------------------------- PPO


def test_gae_on_a_three_step_sequence_and_a_padded_one():
    rewards = t([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = t([[0.5, 0.6, 0.7], [1.0, 0.5, 9.0]])
    mask = torch.tensor(
        [[1, 1, 1], [1, 1, 0]]
    )  # the second sequence is right-padded: its 5 and 9 never count
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # seq 0: d2 = 1 - 0.7 = 0.3, A2 = 0.3
    #        d1 = 0 + 0.9 x 0.7 - 0.6 = 0.03, A1 = 0.03 + 0.45 x 0.3 = 0.165
    #        d0 = 0 + 0.9 x 0.6 - 0.5 = 0.04, A0 = 0.04 + 0.45 x 0.165 = 0.11425
    # seq 1: d1 = 2 - 0.5 = 1.5, A1 = 1.5; d0 = 0.9 x 0.5 - 1.0 = -0.55, A0 = -0.55 + 0.45 x 1.5 = 0.125
    close(adv, [[0.11425, 0.165, 0.3], [0.125, 1.5, 0.0]])
    close(ret, [[0.61425, 0.765, 1.0], [1.125, 2.0, 0.0]])  # A + V, 0 at padding


def test_gae_skips_a_hole_inside_a_sequence():
    rewards = t([[0.0, 7.0, 1.0]])
    values = t([[0.5, 9.0, 0.7]])
    adv, ret = gae(rewards, values, torch.tensor([[1, 0, 1]]), gamma=0.9, lam=0.5)
    # As the 2-step sequence r [0, 1], V [0.5, 0.7]: A1 = 0.3; d0 = 0.9 x 0.7 - 0.5 = 0.13, A0 = 0.13 + 0.45 x 0.3 = 0.265
    close(adv, [[0.265, 0.0, 0.3]])
    close(ret, [[0.765, 0.0, 1.0]])


def test_gae_with_gamma_and_lambda_one_is_return_minus_value():
    adv, _ = gae(t([[0.0, 0.0, 1.0]]), t([[0.5, 0.6, 0.7]]), torch.ones(1, 3), gamma=1.0, lam=1.0)
    close(adv, [[0.5, 0.4, 0.3]])  # 1 - V_t


# clip 0.2, returns per token, v_old = 0.5 except where noted:
# a: v 1.0, R 1.0: (v-R)^2 = 0; clipped v = 0.5 + 0.2 = 0.7, (0.7-1)^2 = 0.09 -> 0.5 x 0.09 = 0.045 (clipped wins)
# b: v 0.6, R 1.0: 0.16; clipped v = 0.6 (inside), 0.16 -> 0.08
# c: v 0.0, R 1.0: 1.0; clipped v = 0.3, 0.49 -> 0.5 x 1.0 = 0.5
# d: v 0.0, R -1.0: 1.0; clipped v = 0.3, 1.69 -> 0.5 x 1.69 = 0.845 (clipped wins)
VALUES, RETURNS = [[1.0, 0.6, 0.0, 0.0]], [[1.0, 1.0, 1.0, -1.0]]


def test_value_loss_clips_around_the_old_value():
    values = t(VALUES).requires_grad_()
    loss, metrics = value_loss(
        values, torch.full((1, 4), 0.5, dtype=F64), t(RETURNS), torch.ones(1, 4), 0.2, "token"
    )
    close(loss, 1.47 / 4)  # (0.045 + 0.08 + 0.5 + 0.845) / 4
    close(metrics["value/clip_frac"], 0.5)  # a and d
    close(metrics["value/mean"], 0.4)  # (1 + 0.6 + 0 + 0) / 4
    loss.backward()
    # (v - R) / 4 where the unclipped branch counts, 0 where the saturated clip wins
    close(values.grad, [[0.0, -0.4 / 4, -1.0 / 4, 0.0]])


def test_value_loss_without_clip():
    loss, metrics = value_loss(
        t(VALUES), torch.full((1, 4), 0.5, dtype=F64), t(RETURNS), torch.ones(1, 4), None, "token"
    )
    close(loss, 0.5 * 2.16 / 4)  # 0.5 x (0 + 0.16 + 1 + 1) / 4
    close(metrics["value/clip_frac"], 0.0)


def test_value_loss_explained_variance():
    returns = t([[1.0, 2.0, 3.0]])
    _, perfect = value_loss(returns, returns, returns, torch.ones(1, 3), 0.2, "token")
    close(perfect["value/explained_variance"], 1.0)
    _, constant = value_loss(
        torch.full((1, 3), 2.0, dtype=F64), returns, returns, torch.ones(1, 3), None, "token"
    )
    close(constant["value/explained_variance"], 0.0)  # residual [-1, 0, 1] varies as much as the returns


def test_masked_mean_and_whiten():
    x = t([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    close(masked_mean(x, mask), 2.5)  # (1 + 2 + 3 + 4) / 4
    close(masked_mean(x, mask, dim=1), [2.0, 4.0])
    # mean 2.5, unbiased var (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
    s = math.sqrt(5 / 3)
    close(masked_whiten(x, mask, eps=0.0), [[-1.5 / s, -0.5 / s, 0.5 / s], [1.5 / s, 0.0, 0.0]])
    close(
        masked_whiten(x, mask, shift_mean=False, eps=0.0),
        [[-1.5 / s + 2.5, -0.5 / s + 2.5, 0.5 / s + 2.5], [1.5 / s + 2.5, 0.0, 0.0]],
    )


# ----------------------------------------------------------------------------- gradient accumulation

B, T = 8, 5
LENGTHS = [5, 1, 3, 5, 2, 4, 1, 3]


def random_batch():
    g = torch.Generator().manual_seed(0)
    mask = torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]  # [B, T], right-padded
    logp = (-torch.rand(B, T, generator=g, dtype=F64)).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(B, T, generator=g, dtype=F64)
    ref = logp.detach() + 0.3 * torch.randn(B, T, generator=g, dtype=F64)
    adv = torch.randn(B, generator=g, dtype=F64)
    return logp, old, ref, adv, mask


def accumulated(loss_fn, micro_batches, mask):
    """Sum of the losses of the micro-batches, each trimmed to its own longest sequence."""
    total = 0.0
    for rows in micro_batches:
        width = int(mask[rows].sum(dim=1).max())
        total = total + loss_fn(rows, width)
    return total


@pytest.mark.parametrize("mode", ["token", "sequence", "dr_grpo"])
@pytest.mark.parametrize("split", [1, 2, 8], ids=lambda n: f"{n}-micro-batches")
def test_policy_loss_accumulates_exactly(mode, split):
    logp, old, ref, adv, mask = random_batch()
    full, _ = policy_loss(logp, old, adv, mask, 0.2, 0.28, mode, ref_logprobs=ref, beta=0.05)
    (full_grad,) = torch.autograd.grad(full, logp)
    num_tokens, num_sequences, max_length = mask.sum(), B, T  # the whole step's normalizers

    def micro(rows, width):
        return policy_loss(
            logp[rows, :width],
            old[rows, :width],
            adv[rows],
            mask[rows, :width],
            0.2,
            0.28,
            mode,
            ref_logprobs=ref[rows, :width],
            beta=0.05,
            num_tokens=num_tokens,
            num_sequences=num_sequences,
            max_length=max_length,
        )[0]

    parts = torch.arange(B).chunk(split)
    summed = accumulated(micro, parts, mask)
    (summed_grad,) = torch.autograd.grad(summed, logp)
    close(summed, full.item(), atol=1e-12)
    close(summed_grad, full_grad, atol=1e-12)


def test_local_normalizers_do_not_accumulate():
    # The reason the global normalizers exist: token means of micro-batches of unequal token counts
    # summed (or averaged) differ from the full-batch token mean.
    logp, old, _, adv, mask = random_batch()
    full, _ = policy_loss(logp, old, adv, mask, 0.2, 0.28, "token")
    parts = torch.arange(B).chunk(2)
    local = sum(policy_loss(logp[r], old[r], adv[r], mask[r], 0.2, 0.28, "token")[0] for r in parts) / 2
    assert abs(local.item() - full.item()) > 1e-3


@pytest.mark.parametrize("mode", ["token", "sequence", "dr_grpo"])
def test_value_loss_accumulates_exactly(mode):
    g = torch.Generator().manual_seed(1)
    mask = torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]  # [B, T]
    values = torch.randn(B, T, generator=g, dtype=F64).requires_grad_()
    old_values = values.detach() + 0.3 * torch.randn(B, T, generator=g, dtype=F64)
    returns = torch.randn(B, T, generator=g, dtype=F64)
    full, _ = value_loss(values, old_values, returns, mask, 0.2, mode)
    (full_grad,) = torch.autograd.grad(full, values)

    def micro(rows, width):
        return value_loss(
            values[rows, :width],
            old_values[rows, :width],
            returns[rows, :width],
            mask[rows, :width],
            0.2,
            mode,
            num_tokens=mask.sum(),
            num_sequences=B,
            max_length=T,
        )[0]

    summed = accumulated(micro, torch.arange(B).chunk(B), mask)
    (summed_grad,) = torch.autograd.grad(summed, values)
    close(summed, full.item(), atol=1e-12)
    close(summed_grad, full_grad, atol=1e-12)
