"""MNNS as CoT2 sets it: the multiset split, the values format (one token per value with number pieces),
sampled sign paths, CoT2's supervision target, and a GPT-2 tiny model whose latent rollouts recompute exactly."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
import torch
from tiny_mnns import mnns_model

from neuralese.config import NeuraleseConfig, TinyModelConfig
from neuralese.envs import env_texts, make_env
from neuralese.envs.mnns import best_paths, multiset_split, path_distribution
from neuralese.errors import EnvError
from neuralese.policy import NeuralesePolicy
from neuralese.tiny import NUMBER_PATTERN, build_tiny_model, build_tokenizer

VALUES = {"values": True, "cot": True, "split": "multiset"}


def brute_min(numbers: list[int]) -> int:
    totals = [
        sum(s * n for s, n in zip(signs, numbers))
        for signs in itertools.product((1, -1), repeat=len(numbers))
    ]
    return min(t for t in totals if t >= 0)


def test_multiset_split_is_cot2s_and_no_permutation_crosses_it():
    parts = multiset_split(4, 9, 42)
    assert (len(parts["train"]), len(parts["test"])) == (5253, 1308)  # CoT2's counts with seed 42
    assert len(parts["train"]) + len(parts["test"]) == 9**4
    train = {tuple(sorted(s)) for s in parts["train"]}
    assert not train & {tuple(sorted(s)) for s in parts["test"]}
    assert len(train) == int(0.8 * 495)  # C(12, 4) multisets
    env = make_env("mnns", VALUES)
    assert env.dataset("test", 10**6, seed=0).num_rows == 1308  # every test sequence, asked for more


def test_train_parts_split_the_train_multisets():
    stage0 = set(make_env("mnns", {**VALUES, "train_part": "stage0"}).sequences("train"))
    rl = set(make_env("mnns", {**VALUES, "train_part": "rl", "rl_share": 0.25}).sequences("train"))
    assert not stage0 & rl and stage0 | rl == set(multiset_split(4, 9, 42)["train"])
    assert not {tuple(sorted(s)) for s in stage0} & {tuple(sorted(s)) for s in rl}
    assert 0.15 < len(rl) / (len(stage0) + len(rl)) < 0.35
    # rl_share 0 keeps nothing apart: both parts are the whole train split, rows and all.
    train = make_env("mnns", VALUES).dataset("train", 500, seed=3)
    for part in ("stage0", "rl"):
        both = make_env("mnns", {**VALUES, "train_part": part, "rl_share": 0}).dataset("train", 500, seed=3)
        assert both["prompt"] == train["prompt"]


@pytest.mark.parametrize("path", ["optimal", "sampled"])
def test_values_format_is_one_token_per_step_and_the_answer_last(path):
    env = make_env("mnns", {**VALUES, "path": path})
    rows = env.dataset("train", 300, seed=1)
    tok = build_tokenizer(env_texts(rows), pattern=NUMBER_PATTERN)
    for row in rows:
        numbers = row["numbers"]
        ids = tok(row["completion"], add_special_tokens=False).input_ids
        assert len(ids) == len(numbers)  # count - 1 partial sums and the answer, one token each
        values = [int(tok.decode([i])) for i in ids]
        assert values[-1] == int(row["answer"]) == brute_min(numbers)
        steps = [0, *values[:-1]]
        assert all(abs(b - a) == n for a, b, n in zip(steps, steps[1:], numbers))  # a real sign path
        assert row["written_steps"] == [tok.decode([i]) for i in ids[:-1]]
        assert row["prompt"] == ",".join(map(str, numbers)) + "?"
        if path == "optimal":  # the answer is the path's own total
            assert abs(values[-1] - steps[-1]) == numbers[-1]
    answer_only = make_env("mnns", {**VALUES, "cot": False}).dataset("train", 20, seed=1)
    assert all(r["completion"] == f"{int(r['answer']):+d}" for r in answer_only)


def test_sampled_paths_are_uniform_over_all_sign_paths_or_the_best_beams():
    numbers = [3, 1, 4, 2]
    env = make_env("mnns", {**VALUES, "path": "sampled"})
    rng = random.Random(0)
    firsts = Counter(env.row(numbers, rng)["written_steps"][0] for _ in range(2000))
    assert set(firsts) == {"+3", "-3"} and abs(firsts["+3"] - 1000) < 120
    beams = make_env("mnns", {**VALUES, "path": "sampled", "beams": 2})
    allowed = {
        tuple(itertools.accumulate(s * n for s, n in zip(signs, numbers)))[:-1]
        for signs in best_paths(numbers, 2)
    }
    for _ in range(50):
        assert tuple(int(x) for x in beams.row(numbers, rng)["written_steps"]) in allowed


def test_path_distribution_is_the_share_of_sign_paths_reaching_each_sum():
    numbers = [5, 2, 2]
    for step in (1, 2, 3):
        dist = path_distribution(numbers, step)
        counts = Counter(
            sum(s * n for s, n in zip(signs, numbers)) for signs in itertools.product((1, -1), repeat=step)
        )
        assert dist == {v: c / 2**step for v, c in counts.items()}


@pytest.mark.parametrize(
    "args",
    [
        {"path": "sampled"},
        {"train_part": "rl"},
        {**VALUES, "rl_share": 1.0},
        {**VALUES, "beams": 17},
        {**VALUES, "min_count": 3},
        {**VALUES, "path": "best"},
    ],
)
def test_bad_combinations_are_refused(args):
    with pytest.raises(EnvError, match="rejected env.args"):
        make_env("mnns", args)


def test_gpt2_latent_soft_thoughts_recompute_exactly(tmp_path):
    env = make_env("mnns", {**VALUES, "path": "sampled"})
    rows = env.dataset("train", 64, seed=0)
    tok, model = mnns_model(rows)
    assert model.config.model_type == "gpt2" and model.config.resid_pdrop == 0.0
    for weights in ("softmax", "multiplex"):
        nz = NeuraleseConfig(
            mode="latent",
            space="embedding",
            input="latent_only",
            projection="identity",
            num_thoughts=3,
            tbptt_window="full",
            embedding_weights=weights,
            multiplex_samples=3,
        )
        policy = NeuralesePolicy(model, tok, nz).train()
        ids, mask = policy.encode(list(rows["prompt"][:8]))
        ro = policy.rollout(ids, mask, 2, 1.0, torch.Generator().manual_seed(0))
        rc = policy.recompute(ro, "full")
        torch.testing.assert_close(rc.logprobs, ro.logprobs, atol=1e-5, rtol=0)
        rc.logprobs.sum().backward()
        assert model.transformer.wte.weight.grad.abs().sum() > 0
        model.zero_grad()


def test_stage0_dropout_trains_with_it_and_saves_a_model_without(tmp_path):
    from transformers import AutoModelForCausalLM

    from neuralese.tiny import save_tiny

    tok = build_tokenizer(["3,1,4,2?+3-2+0+0"], pattern=NUMBER_PATTERN)
    for arch in ("gpt2", "llama"):
        cfg = TinyModelConfig(
            arch=arch,
            hidden_size=16,
            num_layers=1,
            num_heads=2,
            intermediate_size=32,
            max_positions=16,
            dropout=0.5,
        )
        model = build_tiny_model(tok, cfg).train()
        ids = torch.tensor([tok("3,1,4,2?+3-2+0+0").input_ids])
        assert not torch.equal(model(ids).logits, model(ids).logits), arch  # stage 0 drops out
        loaded = AutoModelForCausalLM.from_pretrained(save_tiny(model, tok, tmp_path / arch)).train()
        assert torch.equal(loaded(ids).logits, loaded(ids).logits), arch  # RL's model does not


def test_rl_reads_only_prompts_and_answers_so_another_written_chain_is_no_unknown_text():
    """A stage 0 that learned one optimal path knows fewer partial sums than RL rows that draw theirs:
    RL never tokenizes a row's completion, so only stage 0 refuses it."""
    from neuralese.preflight import READ_IN_STAGE0, check_tokens

    optimal = make_env("mnns", {"count": 4, "values": True, "cot": True, "path": "optimal"})
    sampled = make_env("mnns", {"count": 4, "values": True, "cot": True, "path": "sampled"})
    tok = build_tokenizer(env_texts(optimal.dataset("train", 500, seed=0)), pattern=NUMBER_PATTERN)
    rows = sampled.dataset("train", 2000, seed=0)
    check_tokens(rows, tok, "rl", "optimal stage 0")  # prompts and answers: every piece known
    with pytest.raises(EnvError, match="column 'completion'"):
        check_tokens(rows, tok, "stage 0", "optimal stage 0", READ_IN_STAGE0)
