"""Scale-out on real processes started by `accelerate launch` with the shipped configs.

- Two CPU processes (gloo) take the same update as one process on the same global batch, with GRPO
  and with RAFT (whose normalizer counts the kept samples of both processes, one of which keeps none).
  The batch is fixed (rolled out once, then split by whole groups) rather than sampled by
  each process: a process draws from its own generator, so two processes sample other
  completions than one does. What data parallelism must preserve is the update given the
  batch, and that is what is compared, together with the gathered reward statistics
  (`scale_rewards: batch` needs the std over both processes' rewards).
- DeepSpeed ZeRO-2 and ZeRO-3, one CPU process each, train a few steps with finite losses,
  and the feedback adapter trains with the model. Skipped when DeepSpeed is not installed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faults import CHILD_ENV, accelerate_launch, free_port
from runs import run_config, step_rows

from neuralese.config import (
    RunConfig,
    save_config,
)
from neuralese.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "accelerate"


def launch(config: Path, *args: str, num_processes: int = 1, timeout: int = 600, machines: int = 1) -> None:
    """`accelerate launch` of tests/dist_worker.py; with `machines` > 1, one launcher a machine
    (`--machine_rank`), all on 127.0.0.1, as `recipes/accelerate/multinode.yaml` runs on a cluster."""
    port, worker = free_port(), str(Path(__file__).parent / "dist_worker.py")
    cmds = [
        [*accelerate_launch(config, port, num_processes, m, machines), worker, *args] for m in range(machines)
    ]
    env = {**os.environ, **CHILD_ENV}
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds
    ]
    for cmd, proc in zip(cmds, procs):
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-3000:]}\n{err[-6000:]}"


def recipe(model_dir: Path, out: Path, **rl) -> RunConfig:
    return run_config(
        model_dir, out, rewards=("digit_share",), log={"save_every": 100, "completions_every": 100}, **rl
    )


# Batch-wide reward scaling, a KL term, uneven micro-batches and two updates per batch: each depends
# on statistics or normalizers over the whole step. RAFT: its loss is normalized by the kept samples'
# positions, which a threshold makes differ between the two processes' halves.
GRPO = dict(scale_rewards="batch", beta=0.05, micro_batch_per_device=3, num_iterations=2, learning_rate=1e-4)
RAFT = dict(
    algorithm="raft", raft_min_reward=0.1, micro_batch_per_device=3, num_iterations=2, learning_rate=1e-4
)


@pytest.mark.parametrize(
    "config, machines, rl",
    [("ddp_cpu.yaml", 1, GRPO), ("multinode.yaml", 2, GRPO), ("ddp_cpu.yaml", 1, RAFT)],
    ids=["one-machine", "two-machines", "raft"],
)
def test_two_gloo_processes_take_the_one_process_update(tiny_dir, tmp_path, config, machines, rl):
    """Two processes on one machine, or on two machines (one each, over the loopback address)."""
    one = Trainer(recipe(tiny_dir, tmp_path / "one", **rl))
    before = {n: p.detach().clone() for n, p in one.policy.named_parameters()}
    rows = one.next_prompts()
    ro, texts = one.rollout(rows)
    rewards, _, _, _ = one.score(rows, texts, ro)
    assert rewards[:8].std() != rewards[8:].std(), "the two halves must differ for the batch std to matter"
    if rl is RAFT:
        kept = one.advantages(rewards) > 0
        # Unequal halves; here one process keeps no sample and must still take part in the step.
        assert kept.sum() > 0 and kept[:8].sum() != kept[8:].sum(), "the halves must keep unequal shares"
    torch.save({"rollout": ro, "rewards": rewards}, tmp_path / "batch.pt")
    expected = one.update(ro, one.advantages(rewards), rewards)

    save_config(recipe(tiny_dir, tmp_path / "two", **rl), tmp_path / "two.yaml")
    launch(
        CONFIGS / config,
        "update",
        str(tmp_path / "two.yaml"),
        str(tmp_path / "batch.pt"),
        str(tmp_path / "two.pt"),
        num_processes=2,
        machines=machines,
    )
    two = torch.load(tmp_path / "two.pt", weights_only=False)
    assert two["world"] == 2 and two["local_world"] == 2 // machines

    moved = max((p - before[n]).abs().max().item() for n, p in one.policy.named_parameters())
    assert moved > 1e-4, "the update must move the weights for the comparison to mean anything"
    for name, p in one.policy.named_parameters():
        torch.testing.assert_close(two["params"][name], p.detach(), atol=1e-5, rtol=0, msg=name)
    # Adam hides a uniform gradient scale; the gradient norm and the loss do not.
    for key in ("grad_norm", "loss"):
        assert two["metrics"][key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key


def train_two(tmp_path, run: RunConfig) -> dict:
    """Train `run` over 2 gloo processes on this machine; the worker's summary."""
    save_config(run, tmp_path / "recipe.yaml")
    launch(
        CONFIGS / "ddp_cpu.yaml",
        "train",
        str(tmp_path / "recipe.yaml"),
        str(tmp_path / "out.json"),
        num_processes=2,
    )
    return json.loads((tmp_path / "out.json").read_text())


@pytest.mark.slow
def test_two_gloo_processes_train_a_run(tiny_dir, tmp_path):
    """The whole loop over 2 processes: sharded prompts, gathered rewards, one writer."""
    out = train_two(tmp_path, recipe(tiny_dir, tmp_path / "run", scale_rewards="batch"))
    assert out["world"] == 2 and "adapter.gate_logit" in out["moved"]
    rows = step_rows(tmp_path / "run")
    assert [r["step"] for r in rows[:2]] == [1, 2]  # one writer: no line twice
    assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() for r in rows[:2])


@pytest.mark.slow
def test_two_gloo_processes_draw_until_both_hold_groups_with_spread(tiny_dir, tmp_path):
    """Dynamic sampling over 2 processes: each draws its share until both hold groups with spread (a
    collective decides when to stop, so neither waits on the other), and one line counts every draw."""
    train_two(tmp_path, recipe(tiny_dir, tmp_path / "run", steps=3, dynamic_sampling=True))
    rows = step_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert any(r["sampling/draws"] > 1 for r in rows)
    for r in rows:
        assert r["sampling/groups_drawn"] == 4 * r["sampling/draws"]  # both processes' groups, every draw
        assert math.isfinite(r["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_trains_on_cpu(zero3_model_dir, tmp_path, stage):
    pytest.importorskip("deepspeed")
    save_config(recipe(zero3_model_dir, tmp_path / "run", steps=3), tmp_path / "recipe.yaml")
    launch(CONFIGS / f"zero{stage}.yaml", "train", str(tmp_path / "recipe.yaml"), str(tmp_path / "out.json"))
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["distributed_type"] == "DistributedType.DEEPSPEED"
    if stage == 3:
        assert out["partitioned_params"] > 0, (
            "ZeRO-3 partitioned nothing: the test would not exercise its hooks"
        )
    else:
        assert out["partitioned_params"] == 0
    rows = step_rows(tmp_path / "run")
    assert [r["step"] for r in rows[:3]] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() for r in rows[:3])
    assert rows[1]["grad_norm"] > 0
    assert any(n.startswith("model.") for n in out["moved"]), out["moved"]
    assert "adapter.gate_logit" in out["moved"], "the feedback adapter must train under DeepSpeed too"
    assert (tmp_path / "run" / "checkpoints" / "step-3" / "manifest.json").is_file()
    assert "eval/accuracy" in out["final"]


@pytest.mark.slow
def test_deepspeed_over_several_cpu_processes_is_refused_clearly(tiny_dir, tmp_path):
    """accelerate counts DeepSpeed CPU processes as one (each would think it is rank 0)."""
    pytest.importorskip("deepspeed")
    save_config(recipe(tiny_dir, tmp_path / "run"), tmp_path / "recipe.yaml")
    with pytest.raises(
        AssertionError, match="accelerate supports DeepSpeed over several processes only on GPUs"
    ):
        launch(
            CONFIGS / "zero2.yaml",
            "train",
            str(tmp_path / "recipe.yaml"),
            str(tmp_path / "out.json"),
            num_processes=2,
        )


@pytest.mark.slow
def test_bf16_autocast_launch_keeps_float32_weights(tiny_dir, tmp_path):
    """`accelerate launch --mixed_precision bf16` (the full-weight GSM8K recipe's line): bf16 math
    over float32 weights, on CPU here; compared with the same run launched without the flag."""
    from safetensors.torch import load_file

    rows = {}
    for precision in ("no", "bf16"):
        out = tmp_path / precision
        save_config(recipe(tiny_dir, out, steps=2), tmp_path / f"{precision}.yaml")
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--mixed_precision",
            precision,
            "--num_processes",
            "1",
            "--cpu",
            "-m",
            "neuralese.cli",
            "train",
            str(tmp_path / f"{precision}.yaml"),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-5000:]
        rows[precision] = step_rows(out)
        weights = load_file(str(out / "checkpoints" / "step-2" / "model.safetensors"))
        assert all(w.dtype == torch.float32 for w in weights.values())
    assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() for r in rows["bf16"][:2])
    # Same seed, same samples' first step: only the arithmetic's precision differs.
    assert rows["no"][0]["entropy"] != pytest.approx(rows["bf16"][0]["entropy"], abs=1e-5)
    assert rows["no"][0]["entropy"] == pytest.approx(rows["bf16"][0]["entropy"], abs=0.05)


def test_vllm_engine_is_refused_in_hybrid_mode(tmp_path):
    from neuralese.build import check_run
    from neuralese.config import load_config
    from neuralese.errors import ConfigError

    path = tmp_path / "recipe.yaml"
    path.write_text("neuralese:\n  mode: hybrid\nrl:\n  rollout_engine: vllm\n")
    with pytest.raises(ConfigError, match="key 'rl.rollout_engine' must be 'hf' in hybrid mode"):
        check_run(load_config(path), str(path))
    path.write_text("neuralese:\n  mode: latent\nrl:\n  rollout_engine: vllm\n")
    check_run(load_config(path), str(path))
