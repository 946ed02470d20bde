"""The RL trainer on tiny real models: every algorithm runs (RAFT's rounds: tests/test_flywheel.py),
micro-batching does not change the update, a resumed run ends bit for bit where an uninterrupted one does."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from runs import metric_rows, run_config, step_rows

from neuralese.checkpoint import list_checkpoints
from neuralese.errors import ConfigError, TrainingError
from neuralese.trainer import Trainer


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}


@pytest.mark.parametrize(
    "mode,algorithm,extra",
    [
        ("latent", "grpo", {}),
        ("hybrid", "dr_grpo", {"loss_aggregation": "dr_grpo"}),
        ("latent", "rloo", {"loss_aggregation": "sequence", "beta": 0.1}),
        ("hybrid", "ppo", {"num_iterations": 2}),
        ("off", "grpo", {"beta": 0.05, "kl_estimator": "k1"}),
        ("hybrid", "raft", {"raft_min_reward": None, "raft_top_k": 1, "beta": 0.1}),
    ],
)
def test_algorithms_train_and_write_the_run_folder(tiny_dir, tmp_path, mode, algorithm, extra):
    trainer = Trainer(run_config(tiny_dir, tmp_path / "run", mode, algorithm, **extra))
    before = params(trainer)
    final = trainer.train()
    after = params(trainer)
    assert any(not torch.equal(before[n], after[n]) for n in before), "no parameter moved"
    run = tmp_path / "run"
    rows = step_rows(run)
    assert [r["step"] for r in rows[:2]] == [1, 2]
    for key in (
        "reward/mean",
        "accuracy",
        "loss",
        "grad_norm",
        "entropy",
        "time/rollout_s",
        "time/update_s",
        "reward/zero_spread_groups",
        "generated_positions/mean",
        "reward/thought_count/mean",
    ):
        assert key in rows[0], key
    assert rows[0]["reward/thought_count/mean"] == 1.0  # the trainer passed consistent extra columns
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows[:2])
    if mode != "off":
        assert rows[0]["feedback/vector_norm"] > 0
    if extra.get("beta"):
        assert "kl" in rows[0]
    if algorithm == "ppo":
        assert "value/explained_variance" in rows[0]
    if algorithm == "raft":  # the best of each group of 4
        assert rows[0]["raft/kept_share"] == 0.25 and rows[0]["update/skipped"] == 0
    assert "eval/accuracy" in final and (run / "report.png").stat().st_size > 0
    assert (run / "checkpoints" / "step-2" / "manifest.json").is_file()
    assert (run / "config.yaml").is_file() and (run / "completions.jsonl").read_text().count("\n") >= 2


def test_gate_and_latent_gradient_move_in_latent_mode(tiny_dir, tmp_path):
    trainer = Trainer(run_config(tiny_dir, tmp_path / "run", "latent", steps=2, feedback_learning_rate=1e-2))
    trainer.train()
    rows = step_rows(tmp_path / "run")
    # Step 1 starts with the gate at exactly 0: no gradient crosses a feedback edge, the gate opens.
    assert rows[0]["feedback/latent_grad_norm"] == 0 and rows[0]["feedback/gate_mean_abs"] > 0
    assert rows[1]["feedback/latent_grad_norm"] > 0  # step 2: gradient flows through the chain


def test_micro_batching_does_not_change_the_update(tiny_dir, tmp_path):
    """1 micro-batch of 16 and 16 micro-batches of 1 give the same update (token-level loss, whole-step
    normalizers): the same step gradient, hence the same optimizer step."""
    grads, losses = [], []
    for micro in (16, 1):
        cfg = run_config(tiny_dir, tmp_path / f"run{micro}", "latent", micro_batch_per_device=micro)
        trainer = Trainer(cfg)
        rows = trainer.next_prompts()
        ro, texts = trainer.rollout(rows)
        rewards, _, _, _ = trainer.score(rows, texts, ro)
        assert rewards.std() > 0
        metrics = trainer.update(ro, trainer.advantages(rewards), rewards)
        # The optimizer leaves the step's accumulated (clipped) gradient in .grad. Parameters are not
        # compared: Adam's first step is lr * g / |g|, which turns a 1e-9 difference in a near-zero
        # gradient into a full-size one.
        grads.append({n: p.grad.clone() for n, p in trainer.policy.named_parameters() if p.grad is not None})
        losses.append(metrics["loss"])
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        scale = grads[0][name].abs().max().item()
        torch.testing.assert_close(
            grads[0][name], grads[1][name], atol=1e-6 * max(scale, 1e-3), rtol=1e-5, msg=name
        )
    assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("lora", [0, 4])
def test_resumed_run_equals_uninterrupted_run(tiny_dir, tmp_path, lora):
    def cfg(out):
        c = run_config(tiny_dir, out, "latent", steps=4, lora=lora)
        c.rl.lr_scheduler = "linear"
        return c

    whole = Trainer(cfg(tmp_path / "whole"))
    whole.train()
    first = Trainer(cfg(tmp_path / "split"))
    first.train(stop_after=2)
    assert (tmp_path / "split" / "checkpoints" / "step-2").is_dir()
    resumed = Trainer(cfg(tmp_path / "split"), resume=True)
    assert resumed.state.step == 2
    resumed.train()
    a, b = params(whole), params(resumed)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    metrics = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]  # noqa: E731
    assert strip(metrics(tmp_path / "whole")) == strip(metrics(tmp_path / "split"))


def test_lora_reference_is_the_policy_with_adapters_off(tiny_dir, tmp_path):
    cfg = run_config(tiny_dir, tmp_path / "run", "hybrid", lora=4, beta=0.1)
    trainer = Trainer(cfg)
    assert trainer.reference is None  # no copy of the model in memory
    rows = trainer.next_prompts()
    ro, _ = trainer.rollout(rows)
    ref = trainer.loss.reference_logprobs(trainer.policy, trainer.reference, ro)
    base = copy.deepcopy(trainer.policy.model).merge_and_unload()  # LoRA B starts at 0: merged == base
    with torch.no_grad():
        out = base(input_ids=ro.input_ids, attention_mask=ro.attention_mask, position_ids=ro.position_ids)
    logp = (
        torch.log_softmax(out.logits[:, :-1] / ro.temperature, -1)
        .gather(-1, ro.input_ids[:, 1:, None])
        .squeeze(-1)
    )
    expected = torch.where(ro.action_mask[:, 1:], logp, 0.0)
    torch.testing.assert_close(ref[:, 1:], expected, atol=1e-5, rtol=0)


def test_existing_run_folder_is_not_overwritten(tiny_dir, tmp_path):
    Trainer(run_config(tiny_dir, tmp_path / "run", steps=1)).train()
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(run_config(tiny_dir, tmp_path / "run", steps=1))
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


# ----------------------------------------------------------------------------- non-finite weights


def infinite_learning_rate(trainer: Trainer) -> None:
    """Every optimizer group at an infinite learning rate, as a broken schedule would set it (the
    config itself refuses `rl.learning_rate: .inf`): AdamW then really writes NaN into the weights
    (its weight decay multiplies by 1 - inf * 0)."""
    for group in trainer.optimizer.param_groups:
        group["lr"] = float("inf")


def test_an_infinite_learning_rate_stops_the_run_at_its_first_step_unsaved(tiny_dir, tmp_path):
    trainer = Trainer(run_config(tiny_dir, tmp_path / "run", steps=2, log={"save_every": 1}))
    infinite_learning_rate(trainer)
    with pytest.raises(
        TrainingError, match=r"step 1: the update left \d+ weight tensors NaN or infinite"
    ) as e:
        trainer.train()
    assert "the newest checkpoint is none" in str(e.value)
    assert not any(p.isfinite().all() for p in trainer.policy.model.parameters())  # the outcome is real
    assert list_checkpoints(tmp_path / "run") == []
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # not even the evaluation before it


def test_a_step_that_leaves_weights_non_finite_keeps_the_last_good_checkpoint_newest(tiny_dir, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(run_config(tiny_dir, out, steps=3, log={"save_every": 1}))
    trainer.train(stop_after=1)
    good = {k: v.clone() for k, v in trainer.policy.model.state_dict().items()}
    infinite_learning_rate(trainer)
    with pytest.raises(TrainingError, match="step 2: the update left") as e:
        trainer.train()
    assert f"the newest checkpoint is {out / 'checkpoints' / 'step-1'}" in str(e.value)
    assert list_checkpoints(out) == [out / "checkpoints" / "step-1"]
    assert [r["step"] for r in metric_rows(out)] == [0, 1]
    resumed = Trainer(run_config(tiny_dir, out, steps=3, log={"save_every": 1}), resume=True)
    assert resumed.state.step == 1
    for name, value in resumed.policy.model.state_dict().items():
        assert torch.equal(value, good[name]), name  # the newest checkpoint holds the last good weights


def test_resuming_with_another_recipe_says_what_changed_or_refuses(tiny_dir, tmp_path, capfd):
    Trainer(run_config(tiny_dir, tmp_path / "run", steps=2, log={"save_every": 1})).train(stop_after=1)
    capfd.readouterr()
    Trainer(run_config(tiny_dir, tmp_path / "run", steps=2, log={"save_every": 1}), resume=True)
    assert "the recipe differs" not in capfd.readouterr().err  # the same recipe: nothing to say
    changed = run_config(tiny_dir, tmp_path / "run", steps=3, log={"save_every": 1}, learning_rate=5e-3)
    with pytest.raises(ConfigError, match=r"rl.learning_rate: 0.001 in the run, 0.005 now"):
        Trainer(changed, resume=True)  # what the checkpoint's optimizer state means: refused, not ignored
    Trainer(run_config(tiny_dir, tmp_path / "run", steps=3, log={"save_every": 1}), resume=True)
    err = capfd.readouterr().err
    assert "the recipe differs from the run's" in err and "rl.steps: 2 -> 3" in err
    assert "these apply from here on" in err


def test_a_reward_that_applied_to_no_sample_logs_null_not_nan(tiny_dir, tmp_path):
    def strict(token):
        raise ValueError(f"metrics.jsonl holds {token}, which is not JSON")

    Trainer(run_config(tiny_dir, tmp_path / "run", steps=1, rewards=("digit_share", "never_applies"))).train()
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[1], parse_constant=strict)
    assert row["reward/never_applies/mean"] is None and row["reward/never_applies/std"] == 0.0
    assert isinstance(row["reward/digit_share/mean"], float)
