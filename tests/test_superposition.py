"""neuralese.superposition: hand-computed columns, and the weights it reads are the ones the thoughts were made of."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_mnns import mnns_policy

from neuralese.envs import env_texts, make_env
from neuralese.envs.mnns import path_distribution
from neuralese.evaluate import pass_at_k
from neuralese.superposition import (
    entropy,
    superposition_stats,
    support_share,
    target_weights,
    thought_distributions,
    total_variation,
    uniform_over,
    value_tokens,
)
from neuralese.tiny import build_tokenizer


def test_columns_by_hand():
    # Values -2, 0, 2 on tokens 1, 2, 3 (token 0 is not a value); the target is [1, 1]'s second step.
    target = torch.tensor([[[0.0, 0.25, 0.5, 0.25]]])  # [N=1, K=1, V=4]
    one_path = torch.tensor([[[0.0, 0.0, 1.0, 0.0]]])
    spread = torch.tensor([[[0.1, 0.3, 0.3, 0.3]]])
    a = superposition_stats(one_path, target)
    assert (
        a["reachable_mass"] == [1.0]
        and a["entropy"] == [0.0]
        and a["support"] == [pytest.approx(1 / 3, abs=1e-4)]
    )
    assert a["tv_uniform"] == [pytest.approx(2 / 3, abs=1e-4)] and a["tv_paths"] == [0.5]
    b = superposition_stats(spread, target)
    assert b["reachable_mass"] == [pytest.approx(0.9)] and b["support"] == [1.0]
    assert b["entropy_uniform"] == [pytest.approx(math.log(3), abs=1e-4)]
    assert b["tv_uniform"] == [pytest.approx(0.5 * (0.1 + 3 * (1 / 3 - 0.3)), abs=1e-4)]
    assert entropy(uniform_over(target)).item() == pytest.approx(math.log(3))
    assert total_variation(target, target).item() == 0
    assert support_share(torch.tensor([0.0, 0.2, 0.8, 0.0]), target[0, 0]).item() == pytest.approx(2 / 3)


def test_target_weights_place_each_value_on_its_token():
    out = target_weights(
        [[path_distribution([1, 1], 1), path_distribution([1, 1], 2)]], {-2: 1, 0: 2, 2: 3, 1: 4, -1: 5}, 6
    )
    assert out.shape == (1, 2, 6)
    assert out[0, 0].tolist() == [0, 0, 0, 0, 0.5, 0.5] and out[0, 1].tolist() == [0, 0.25, 0.5, 0.25, 0, 0]


def test_pass_at_k_is_unbiased():
    hits = torch.tensor([[True, False, False, False], [False] * 4, [True] * 4])
    assert pass_at_k(hits, 1) == pytest.approx((0.25 + 0 + 1) / 3)
    assert pass_at_k(hits, 4) == pytest.approx(2 / 3)
    assert pass_at_k(hits, 2) == pytest.approx((0.5 + 0 + 1) / 3)


def test_thought_distributions_are_the_weights_each_soft_thought_was_made_of():
    env = make_env("mnns", {"values": True, "cot": True, "split": "multiset", "path": "sampled"})
    rows = env.dataset("train", 64, seed=0)
    policy = mnns_policy(rows, seed=0, thought_temperature=0.7)
    tok = policy.tokenizer
    assert {v for v in value_tokens(tok, signed_only=True).values()} <= set(range(-36, 37))
    assert not set(value_tokens(tok, signed_only=True)) & {
        tok.convert_tokens_to_ids(str(d)) for d in range(1, 10)
    }
    ids, mask = policy.encode(list(rows["prompt"][:5]))
    ro = policy.rollout(ids, mask, 2, 0.0)
    w = thought_distributions(policy, ro)  # [5, 3, V]
    assert w.shape == (5, 3, len(tok)) and torch.allclose(w.sum(-1), torch.ones(5, 3))
    fed = ro.feedback[ro.feedback_mask].view(5, 3, -1)
    torch.testing.assert_close(fed, w @ policy.embedding_table.detach(), atol=1e-5, rtol=0)


def test_inspect_shows_each_thought_as_weights_over_values(tmp_path):
    from neuralese.inspector import VALUE_VIEW_MIN, format_table, inspect_thoughts, plot, value_view

    env = make_env("mnns", {"values": True, "cot": True, "split": "multiset", "path": "sampled"})
    rows = env.dataset("train", 64, seed=0)
    policy = mnns_policy(rows)
    tok = policy.tokenizer
    prompt = rows["prompt"][0]
    ins = inspect_thoughts(policy, prompt, max_new_tokens=2)
    ids, mask = policy.encode([prompt])
    w = thought_distributions(policy, policy.rollout(ids, mask, 2, 0.0))[0]  # [3, V]
    values = value_tokens(tok, signed_only=True)
    for th, weights in zip(ins.thoughts, w):  # the view is the thought's own weights, value by value
        expected = sorted((values[i], float(weights[i])) for i in values if weights[i] >= VALUE_VIEW_MIN)
        assert [v for v, _ in th.values] == [v for v, _ in expected]
        assert [x for _, x in th.values] == pytest.approx([x for _, x in expected], abs=1e-5)
    # Two partial sums held at once: +3 and -3 at 0.5 each, every other token far below.
    logits = torch.full((1, len(tok)), -30.0)
    logits[0, [tok.convert_tokens_to_ids("+3"), tok.convert_tokens_to_ids("-3")]] = 0.0
    (view,) = value_view(policy, logits)
    assert [v for v, _ in view] == [-3, 3] and [x for _, x in view] == pytest.approx([0.5, 0.5])
    ins.thoughts[0].values = value_view(policy, logits)[0]
    table = format_table(ins)
    assert "weights over values" in table and "-3 0.50  +3 0.50" in table
    assert plot(ins, tmp_path / "thoughts.png").stat().st_size > 0


def test_measure_reads_the_targets_an_environment_declares():
    from neuralese.superposition import measure, reachable_targets

    env = make_env("mnns", {"values": True, "cot": True, "split": "multiset", "path": "sampled"})
    rows = env.dataset("test", 40, seed=0)
    policy = mnns_policy(env.dataset("train", 400, seed=0))
    # The row's columns are MNNS's sign-path distribution, placed on each signed value's token.
    token_of = {v: t for t, v in value_tokens(policy.tokenizer, signed_only=True).items()}
    by_hand = [[path_distribution(nums, k) for k in (1, 2, 3)] for nums in rows["numbers"]]
    expected = target_weights(by_hand, token_of, len(policy.tokenizer))
    torch.testing.assert_close(reachable_targets(rows, policy.tokenizer, 3, len(policy.tokenizer)), expected)
    ids, mask = policy.encode(list(rows["prompt"]))
    w = thought_distributions(policy, policy.rollout(ids, mask, 2, 0.0))
    assert measure(policy, rows, 2, batch_size=16) == superposition_stats(w, expected)  # batches join


def test_a_row_with_a_shorter_chain_counts_only_at_its_own_steps():
    target = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.0, 0.0]]])  # row 2: one step only
    weights = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.3, 0.7]]])
    stats = superposition_stats(weights, target)
    assert stats["reachable_mass"] == [1.0, 1.0] and stats["support"] == [1.0, 0.5]


def test_reach_frontier_targets_and_a_clear_error_without_them():
    from datasets import Dataset

    from neuralese.superposition import measure, reachable_targets

    rows = make_env("reach", {"nodes": 16, "hops": 4, "min_hops": 2}).dataset("test", 30, seed=0)
    tok = build_tokenizer(env_texts(rows))
    target = reachable_targets(rows, tok, 3, len(tok))  # [30, 3, V]
    for row, t in zip(rows, target):
        for k in range(3):
            if k < len(row["reachable"]):
                assert t[k].sum().item() == pytest.approx(1.0)
                assert {tok.convert_ids_to_tokens(i) for i in t[k].nonzero().flatten().tolist()} == set(
                    row["reachable"][k]
                )
            else:
                assert t[k].sum() == 0
    bad = Dataset.from_list([{"reachable": [["a", "b"]], "reachable_weights": [[1.0]]}])
    with pytest.raises(
        ValueError, match="row 0: `reachable` and `reachable_weights` must have the same shape"
    ):
        reachable_targets(bad, tok, 1, len(tok))
    with pytest.raises(ValueError, match=r"no \['reachable', 'reachable_weights'\] column"):
        measure(None, Dataset.from_list([{"prompt": "1+1="}]), 2)
