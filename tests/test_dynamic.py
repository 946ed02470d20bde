"""Dynamic sampling (neuralese.dynamic, `rl.dynamic_sampling`): which groups a step keeps, by hand on real
rollouts; a real run whose every trained group has reward spread, that logs the filter and resumes bit
for bit; and the recipe error that names the key."""

from __future__ import annotations

import json

import pytest
import torch
from runs import run_config, step_rows
from test_config import write
from test_policy import make_policy, rollout

from neuralese.build import check_run
from neuralese.config import load_config
from neuralese.dynamic import Drawn, DynamicSampler, group_spread, joined_stats
from neuralese.errors import ConfigError
from neuralese.trainer import Trainer

G = 2  # samples per prompt in the hand-built draws: 4 prompts x 2 = the 8 rows of one rollout


def test_group_spread_is_the_groups_whose_rewards_differ():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.2])
    assert group_spread(rewards, 2).tolist() == [False, True, False, True]
    assert group_spread(rewards, 4).tolist() == [True, True]
    assert group_spread(torch.tensor([0.3, 0.3 + 1e-12]), 2).tolist() == [False]  # isclose, as TRL's zero std


@pytest.fixture(scope="module")
def drawn_rollout(tiny_dir):
    """A real rollout of 8 rows (4 prompts, each twice), to be scored by hand."""
    policy = make_policy(tiny_dir)
    ro = rollout(policy, prompts=[p for p in ["1+2=", "12+3=", "9+9=", "45+45="] for _ in range(G)])
    return policy, ro


def hand_drawn(ro, rewards: list[float], tag: str) -> Drawn:
    """A draw whose rows are `ro` with the given rewards; each prompt's row names the draw and group."""
    r = torch.tensor(rewards)
    return Drawn(
        rows={"prompt": [f"{tag}{g}" for g in range(4)]},
        rollout=ro,
        texts=[f"{tag}{i // G}.{i % G}" for i in range(8)],
        rewards=r,
        per_func={"score": r.clone()},
        correct=r >= 1,
    )


def collect(draws: list[Drawn], max_draws: int, pad: int):
    queue = list(draws)
    sampler = DynamicSampler(G, max_draws, lambda x: x, pad)
    batch, metrics = sampler.collect(lambda: queue.pop(0))
    return batch, metrics, len(draws) - len(queue)


def test_a_step_draws_until_it_holds_a_group_with_spread_per_prompt(drawn_rollout):
    policy, ro = drawn_rollout
    a = hand_drawn(ro, [1, 1, 0, 1, 0, 0, 1, 1], "a")  # groups with spread: a1
    b = hand_drawn(ro, [0, 1, 1, 1, 1, 0, 0, 1], "b")  # b0, b2, b3
    c = hand_drawn(ro, [0, 1, 0, 1, 0, 1, 0, 1], "c")  # never drawn: a and b hold 4
    batch, m, used = collect([a, b, c], max_draws=4, pad=policy.pad_token_id)
    assert used == 2
    assert batch.rows["prompt"] == ["a1", "b0", "b2", "b3"]  # the kept groups, in the order drawn
    assert batch.texts == ["a1.0", "a1.1", "b0.0", "b0.1", "b2.0", "b2.1", "b3.0", "b3.1"]
    assert batch.rewards.tolist() == [0, 1, 0, 1, 1, 0, 0, 1]
    assert torch.equal(batch.per_func["score"], batch.rewards) and batch.correct.tolist() == [
        r >= 1 for r in batch.rewards.tolist()
    ]
    assert group_spread(batch.rewards, G).all()
    rows = torch.tensor([2, 3, 0, 1, 4, 5, 6, 7])  # where the kept groups' rows sit in their draws
    torch.testing.assert_close(batch.rollout.input_ids, ro.input_ids[rows])
    torch.testing.assert_close(batch.rollout.logprobs, ro.logprobs[rows])
    torch.testing.assert_close(batch.rollout.feedback, ro.feedback[rows])
    assert m == {
        "sampling/draws": 2,
        "sampling/groups_drawn": 8,
        "sampling/spread_share": 0.5,
        "sampling/reward_mean": 10 / 16,  # every drawn sample, not the batch's 0.5
        "sampling/accuracy": 10 / 16,
    }


def test_a_step_of_several_draws_sums_its_reward_timings():
    stats = [
        {"time/reward/score_s": 0.5, "reward/rm/calls": 3.0},
        {"time/reward/score_s": 0.25, "reward/rm/calls": 5.0},
    ]
    assert joined_stats(stats) == {"time/reward/score_s": 0.75, "reward/rm/calls": 5.0}


def test_a_step_short_after_its_last_draw_is_filled_in_the_order_drawn(drawn_rollout):
    policy, ro = drawn_rollout
    a = hand_drawn(ro, [1, 1, 0, 0, 1, 0, 1, 1], "a")  # a2
    b = hand_drawn(ro, [1, 1, 1, 1, 1, 1, 1, 1], "b")  # none
    batch, m, used = collect([a, b], max_draws=2, pad=policy.pad_token_id)
    assert used == 2
    assert batch.rows["prompt"] == ["a0", "a1", "a2", "a3"]  # a2 kept, then a0, a1, a3 fill the step
    assert batch.rewards.numel() == 8 and m["sampling/spread_share"] == 1 / 8
    one, _, used = collect([a, b], max_draws=1, pad=policy.pad_token_id)
    assert used == 1 and one.rows["prompt"] == ["a0", "a1", "a2", "a3"]  # one draw: the filter is a no-op


def test_a_run_trains_on_groups_with_spread_logs_the_filter_and_resumes_bit_for_bit(tiny_dir, tmp_path):
    def config(out):
        return run_config(tiny_dir, out, steps=2, rewards=("digit_share",), dynamic_sampling=True)

    whole = Trainer(config(tmp_path / "whole"))
    whole.train()
    rows = step_rows(tmp_path / "whole")
    assert any(row["sampling/draws"] > 1 for row in rows)  # an untrained model's groups often tie
    for row in rows:
        assert 1 <= row["sampling/draws"] <= 4 and row["sampling/groups_drawn"] == 4 * row["sampling/draws"]
        assert 0 < row["sampling/spread_share"] <= 1 and 0 <= row["sampling/reward_mean"] <= 1
        if row["sampling/spread_share"] * row["sampling/groups_drawn"] >= 4:  # enough groups with spread
            assert row["reward/zero_spread_groups"] == 0
    assert whole.state.cursor == 4 * sum(r["sampling/draws"] for r in rows)  # every drawn prompt consumed
    for line in (tmp_path / "whole" / "completions.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row.keys() >= {"prompt", "completion", "reward"}

    first = Trainer(config(tmp_path / "split"))
    first.train(stop_after=1)
    resumed = Trainer(config(tmp_path / "split"), resume=True)
    resumed.train()
    for name, p in whole.policy.named_parameters():
        assert torch.equal(p, dict(resumed.policy.named_parameters())[name]), name
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]  # noqa: E731
    assert strip(step_rows(tmp_path / "whole")) == strip(step_rows(tmp_path / "split"))


@pytest.mark.parametrize("algorithm", ["ppo", "raft"])
def test_dynamic_sampling_is_refused_for_an_algorithm_without_groups_to_filter(tmp_path, algorithm):
    with pytest.raises(ConfigError) as e:
        path = write(tmp_path, f"rl: {{algorithm: {algorithm}, dynamic_sampling: true}}\n")
        check_run(load_config(path), str(path))
    assert "key 'rl.dynamic_sampling' must be false unless rl.algorithm is grpo, dr_grpo or rloo" in str(
        e.value
    )
