"""Learning from positive samples (RAFT, expert iteration; neuralese.flywheel): the filter and the loss by
hand, the loss through the latent chain in every thought mode and space, the round pool recomputed as its
rows were sampled, a step that keeps nothing as a logged no-op, rounds that log and resume bit for bit,
and the recipe errors that name their key."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from runs import run_config, step_rows
from test_config import write
from test_policy import PROMPTS, THOUGHTS, make_policy, rollout

from neuralese.ablate.run import taught
from neuralese.algorithms import keep_mask, positive_loss
from neuralese.build import check_run
from neuralese.config import RLConfig, load_config
from neuralese.errors import ConfigError
from neuralese.flywheel import Flywheel
from neuralese.rollout import cat_rollouts
from neuralese.step_loss import StepLoss, Targets
from neuralese.trainer import Trainer

# ----------------------------------------------------------------------------- the filter and the loss by hand


def test_keep_mask_by_threshold_by_rank_and_by_both():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.5, 0.2, 0.2, 0.9, 0.1])  # two groups of 4
    assert keep_mask(rewards, 4, 1.0, None).tolist() == [True, False, True, False] + [False] * 4
    # The best of each group, right or not; among equal rewards the earlier sample.
    assert keep_mask(rewards, 4, None, 1).tolist() == [True, False, False, False, False, False, True, False]
    assert keep_mask(rewards, 4, None, 2).tolist() == [True, False, True, False, True, False, True, False]
    assert keep_mask(rewards, 4, 0.5, 2).tolist() == [True, False, True, False, False, False, True, False]
    with pytest.raises(ValueError, match="needs min_reward, top_k or both"):
        keep_mask(rewards, 4, None, None)


def test_positive_loss_on_a_hand_built_batch():
    logprobs = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5], [-3.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    keep = torch.tensor([1.0, 0.0, 1.0])  # row 1 was not kept: nothing of it counts
    loss, m = positive_loss(logprobs, logprobs.detach(), keep, mask, aggregation="token")
    assert loss.item() == pytest.approx((1 + 2 + 3) / 3)  # the mean NLL of the 3 kept tokens
    loss.backward()
    expected = torch.tensor([[-1 / 3, -1 / 3, 0.0], [0.0, 0.0, 0.0], [-1 / 3, 0.0, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected)
    assert m["nll"].item() == pytest.approx(2.0)
    seq, _ = positive_loss(logprobs, logprobs.detach(), keep, mask, aggregation="sequence")
    assert seq.item() == pytest.approx((1.5 + 3.0) / 2)  # the mean of each kept sequence's mean
    # Whole-step normalizers: the kept tokens of the step (4 here, say over two micro-batches).
    half, _ = positive_loss(logprobs, logprobs.detach(), keep, mask, aggregation="token", num_tokens=4)
    assert half.item() == pytest.approx(6 / 4)


def test_positive_loss_with_kl_to_the_reference():
    logprobs = torch.tensor([[-1.0, -2.0]])
    old = torch.tensor([[-1.2, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    mask, keep = torch.ones(1, 2, dtype=torch.bool), torch.ones(1)
    loss, m = positive_loss(
        logprobs, old, keep, mask, aggregation="token", ref_logprobs=ref, beta=0.1, kl_estimator="k3"
    )
    k3 = [math.exp(r - p) - (r - p) - 1 for p, r in ((-1.0, -1.5), (-2.0, -1.0))]
    ratio = [math.exp(-1.0 + 1.2), 1.0]  # exp(log pi - log pi_old): the KL of samples drawn by pi_old
    per_token = [1.0 + 0.1 * ratio[0] * k3[0], 2.0 + 0.1 * ratio[1] * k3[1]]
    assert loss.item() == pytest.approx(sum(per_token) / 2)
    assert m["kl"].item() == pytest.approx((ratio[0] * k3[0] + ratio[1] * k3[1]) / 2)


def test_a_batch_without_a_kept_sample_is_zero_not_nan():
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss, m = positive_loss(
        logprobs, logprobs.detach(), torch.zeros(2), mask, aggregation="token", num_tokens=0
    )
    loss.backward()
    assert loss.item() == 0 and torch.equal(logprobs.grad, torch.zeros(2, 2))
    assert not any(math.isnan(v.item()) for v in m.values())


def test_the_filter_metrics_count_what_the_check_calls_right():
    """The filter may be a reward model: its kept samples' accuracy is read by the environment's check."""
    rl = RLConfig(algorithm="raft", prompts_per_step=2, samples_per_prompt=4)
    wheel = Flywheel(rl, 0, lambda x: x, pad_token_id=0)
    keep = torch.tensor([True, True, False, False, False, False, False, False])
    correct = torch.tensor([True, False, True, False, False, False, False, False])
    counts, m = wheel.filter_metrics(keep, correct)
    assert counts.tolist() == [8, 2, 1]
    assert m == {"raft/kept": 2, "raft/kept_share": 0.25, "raft/kept_groups": 0.5, "raft/kept_accuracy": 0.5}
    _, m = wheel.filter_metrics(torch.zeros(8, dtype=torch.bool), correct)
    assert m["raft/kept"] == 0 and m["raft/kept_accuracy"] is None  # nothing kept: no precision, not 0/0


# ----------------------------------------------------------------------------- every mode and space

MODES = {
    "latent": {"mode": "latent"},
    "hybrid": {"mode": "hybrid"},
    "channel": {"mode": "channel", "channel_width": 8},
    "refine": {"mode": "refine", "refine_passes": 2},
}
SPACES = ["hidden", "hidden-gaussian", "embedding-gumbel", "pause"]


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("mode", list(MODES))
def test_the_loss_of_kept_samples_reaches_the_thoughts_in_every_mode(tiny_dir, mode, space):
    """RAFT's step loss on a real rollout: the kept rows alone carry gradient, and it crosses the
    feedback edges inside the window (the probe on the fed-back states) wherever a thought has content."""
    policy = make_policy(tiny_dir, **MODES[mode], **THOUGHTS[space])
    ro = rollout(policy)
    rl = RLConfig(algorithm="raft", samples_per_prompt=2, raft_min_reward=1.0)
    loss_fn = StepLoss(rl, window=2, micro_batch=8)
    keep = loss_fn.advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))  # rows 0 and 3 kept
    counted = loss_fn.counted(ro, keep)
    assert counted[1:3].sum() == 0 and counted[0].sum() > 0
    norm = dict(num_tokens=counted.sum().float(), num_sequences=2, max_length=None)
    loss, m, probe = loss_fn(policy, ro, torch.arange(4), Targets(keep, None, None, None, norm))
    assert math.isfinite(loss.item()) and loss.item() != 0  # a Gaussian thought's density may exceed 1
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.model.parameters())
    if space != "pause":  # a pause thought is one learned vector: no gradient flows back through it
        assert probe.grad[[0, 3]].abs().sum() > 0
        # The rows not kept get no gradient: the probe on them, and so the weights, see none of them.
        assert probe.grad[[1, 2]].abs().sum() == 0


@pytest.mark.parametrize("space", ["hidden", "embedding-gumbel"])
@pytest.mark.parametrize("mode", list(MODES))
def test_a_pool_of_rollouts_recomputes_each_row_as_it_was_sampled(tiny_dir, mode, space):
    """A round's pool joins rows of several steps (other prompt lengths: more left padding); each row's
    recomputed log-probs are still its sampling log-probs, for every window."""
    policy = make_policy(tiny_dir, **MODES[mode], **THOUGHTS[space])
    parts = [rollout(policy, PROMPTS[:2], seed=1), rollout(policy, ["7+8=", "1+1="], seed=2)]
    assert parts[0].prompt_length != parts[1].prompt_length
    pool = cat_rollouts([p.select(torch.tensor([1, 0])) for p in parts], policy.pad_token_id)
    assert pool.input_ids.shape[0] == 4
    # The pool pads its rows more than their own rollouts did, so the float32 sums run in another order:
    # a few ulps of the value (a Gumbel thought's log-density reaches |40|), not a fixed 1e-5.
    for window in (0, 2, "full"):
        torch.testing.assert_close(
            policy.recompute(pool, window).logprobs, pool.logprobs, atol=1e-5, rtol=1e-6
        )
    assert policy.decode(pool) == [t for p in parts for t in policy.decode(p.select(torch.tensor([1, 0])))]


# ----------------------------------------------------------------------------- in the trainer


def test_a_step_that_keeps_nothing_is_a_logged_no_op(tiny_dir, tmp_path):
    cfg = run_config(tiny_dir, tmp_path / "run", "latent", "raft", steps=1, raft_min_reward=100.0)
    trainer = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    trainer.train()
    (row,) = step_rows(tmp_path / "run")
    assert row["update/skipped"] == 1 and row["raft/kept"] == 0 and row["raft/kept_accuracy"] is None
    assert "loss" not in row  # no loss was taken, rather than a NaN or a 0 that looks like one
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in row.values())
    assert all(torch.equal(before[n], p) for n, p in trainer.policy.named_parameters())
    assert trainer.scheduler.last_epoch == 0  # no optimizer step, so the schedule did not move


def round_config(tiny_dir, out, **extra):
    """RAFT rounds of 2 steps (32 samples), 2 epochs each, the best 2 samples of each group kept."""
    cfg = run_config(
        tiny_dir,
        out,
        "latent",
        "raft",
        steps=4,
        raft_min_reward=None,
        raft_top_k=2,
        raft_samples_per_round=32,
        num_iterations=2,
        lr_scheduler="linear",
        feedback_learning_rate=1e-2,
        **extra,
    )
    cfg.neuralese = dataclasses.replace(cfg.neuralese, tbptt_window="full")
    return cfg


def test_rounds_train_on_their_pool_log_every_round_and_resume_mid_round_bit_for_bit(tiny_dir, tmp_path):
    whole = Trainer(round_config(tiny_dir, tmp_path / "whole"))
    whole.train()
    rows = step_rows(tmp_path / "whole")
    assert [r.get("round/index") for r in rows] == [None, 1, None, 2]  # a line for every round, at its end
    assert [r["round/pool"] for r in rows] == [8, 16, 8, 16]  # 2 of each group of 4, 4 groups a step
    closing = rows[1]
    assert (
        closing["round/sampled"] == 32 and closing["round/kept"] == 16 and closing["round/kept_share"] == 0.5
    )
    assert closing["round/updates"] == 4 and 0 <= closing["round/kept_accuracy"] <= 1
    assert "loss" not in rows[0] and math.isfinite(closing["loss"])  # the pool trains at the round's end
    assert whole.scheduler.last_epoch == 8  # rl.steps x rl.num_iterations optimizer steps, as any run
    assert rows[3]["feedback/latent_grad_norm"] > 0  # the gate opened: gradient crossed the chain

    first = Trainer(round_config(tiny_dir, tmp_path / "split"))
    first.train(stop_after=1)  # a checkpoint in the middle of round 1, its pool half gathered
    assert (tmp_path / "split" / "checkpoints" / "step-1" / "process_state.pt").is_file()
    resumed = Trainer(round_config(tiny_dir, tmp_path / "split"), resume=True)
    assert resumed.flywheel.pool is not None and resumed.flywheel.pool.input_ids.shape[0] == 8
    resumed.train()
    for name, p in whole.policy.named_parameters():
        assert torch.equal(p, dict(resumed.policy.named_parameters())[name]), name
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]  # noqa: E731
    read = lambda run: [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert strip(read(tmp_path / "whole")) == strip(read(tmp_path / "split"))


def test_the_ablation_counts_the_groups_a_step_taught_by_each_algorithm():
    grpo = [{"reward/zero_spread_groups": 0.75}, {"reward/zero_spread_groups": 0.25}]
    raft = [{"reward/zero_spread_groups": 1.0, "raft/kept_groups": 1.0}, {"raft/kept_groups": 0.0}]
    ppo = [{"reward/zero_spread_groups": 1.0, "value/explained_variance": 0.1}]
    assert taught(grpo) == 0.5 and taught(raft) == 0.5 and taught(ppo) is None


# ----------------------------------------------------------------------------- recipe errors


@pytest.mark.parametrize(
    "text, fragment",
    [
        (
            "rl: {algorithm: raft, raft_min_reward: null}\n",
            "key 'rl.raft_top_k' must be set when rl.raft_min_reward is null",
        ),
        ("rl: {raft_top_k: 1}\n", "key 'rl.raft_top_k' must be null unless rl.algorithm is 'raft'"),
        (
            "rl: {algorithm: raft, samples_per_prompt: 4, raft_top_k: 4}\n",
            "key 'rl.raft_top_k' must be below rl.samples_per_prompt (4)",
        ),
        (
            "rl: {algorithm: grpo, raft_samples_per_round: 256}\n",
            "key 'rl.raft_samples_per_round' must be 0 unless rl.algorithm is 'raft'",
        ),
        (
            "rl: {algorithm: raft, prompts_per_step: 4, samples_per_prompt: 4, raft_samples_per_round: 40}\n",
            "key 'rl.raft_samples_per_round' must be a multiple of rl.prompts_per_step x rl.samples_per_prompt (16)",
        ),
        (
            "rl: {algorithm: raft, steps: 5, prompts_per_step: 4, samples_per_prompt: 4, raft_samples_per_round: 32}\n",
            "key 'rl.steps' must be a multiple of the steps of a RAFT round (2)",
        ),
        (
            "curriculum: {stages: 2, advance: plateau}\nneuralese: {num_thoughts: 2}\n"
            "rl: {algorithm: raft, steps: 4, prompts_per_step: 4, samples_per_prompt: 4, raft_samples_per_round: 32}\n",
            "key 'curriculum.advance' must be 'steps' with rl.raft_samples_per_round > 0",
        ),
        ("rl: {algorithm: positive}\n", "key 'rl.algorithm' expects one of"),
    ],
)
def test_recipe_errors_name_the_key_and_what_it_expects(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as e:
        path = write(tmp_path, text)
        check_run(load_config(path), str(path))
    assert fragment in str(e.value), str(e.value)
