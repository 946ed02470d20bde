"""GPU tier (`pytest -m gpu -o addopts=""`; scripts/test.sh runs it when CUDA is available).

- The trainer runs on CUDA in bf16 (LoRA) and with bf16 autocast over float32 weights (full),
  losses finite, weights moving, and the rollout's log-probs near the recompute's.
- Each GSM8K GPU recipe runs a few small steps on a real local Qwen2.5-class checkpoint named
  by the environment variable NEURALESE_QWEN_PATH (skipped without it: nothing is downloaded).
- With vLLM installed, the vLLM engine's greedy answers after a latent prefix equal the HF
  engine's on the GPU too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs import run_config, step_rows

from neuralese.config import LoraSettings, load_config
from neuralese.trainer import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
ROOT = Path(__file__).resolve().parents[1]
QWEN = os.environ.get("NEURALESE_QWEN_PATH")
# bf16 logits carry ~3 significant digits: a rollout token's log-prob and its parallel recompute
# differ by rounding in different kernel shapes, not by a bug, up to about this much.
BF16_LOGPROB_TOL = 0.1


def tiny_cfg(tiny_dir, out, dtype: str, lora: int):
    cfg = run_config(tiny_dir, out, "latent", steps=2)
    cfg.model.dtype = dtype
    cfg.model.lora = LoraSettings(r=lora, alpha=2 * lora) if lora else LoraSettings()
    return cfg


def test_bf16_lora_trains_on_cuda(tiny_dir, tmp_path):
    trainer = Trainer(tiny_cfg(tiny_dir, tmp_path / "run", "bfloat16", lora=4))
    assert trainer.accelerator.device.type == "cuda"
    rows = trainer.next_prompts()
    ro, _ = trainer.rollout(rows)
    with torch.no_grad():
        rc = trainer.policy.recompute(ro, 0)
    gap = (rc.logprobs - ro.logprobs)[ro.loss_mask].abs().max().item()
    assert gap < BF16_LOGPROB_TOL, f"bf16 rollout vs recompute log-probs differ by {gap}"
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}
    trainer.train()
    rows = step_rows(tmp_path / "run")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows[:2])
    moved = [n for n, p in trainer.policy.named_parameters() if n in before and not torch.equal(before[n], p)]
    assert any("lora_" in n for n in moved) and "adapter.gate_logit" in moved


def test_autocast_full_trains_on_cuda(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(
        "ACCELERATE_MIXED_PRECISION", "bf16"
    )  # what `accelerate launch --mixed_precision bf16` sets
    trainer = Trainer(tiny_cfg(tiny_dir, tmp_path / "run", "float32", lora=0))
    assert trainer.accelerator.mixed_precision == "bf16"
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    trainer.train()
    rows = step_rows(tmp_path / "run")
    assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() for r in rows[:2])
    assert all(p.dtype == torch.float32 for p in trainer.policy.parameters())  # master weights stay float32
    assert sum(not torch.equal(before[n], p) for n, p in trainer.policy.named_parameters()) > 10


@pytest.mark.slow
@pytest.mark.skipif(QWEN is None, reason="set NEURALESE_QWEN_PATH to a local Qwen2.5-0.5B/1.5B folder")
@pytest.mark.parametrize("recipe", ["gsm8k_qwen_lora.yaml", "gsm8k_qwen_full.yaml"])
def test_gsm8k_recipes_run_on_a_real_checkpoint(tmp_path, recipe):
    small = [
        f"model.path={QWEN}",
        f"output_dir={tmp_path / 'run'}",
        "rl.steps=3",
        "rl.prompts_per_step=4",
        "rl.samples_per_prompt=4",
        "rl.max_new_tokens=64",
        "eval.n=16",
        "eval.max_new_tokens=64",
    ]
    load_config(ROOT / "recipes" / recipe, small)  # the overrides are valid keys
    cmd = [sys.executable, "-m", "neuralese.cli", "train", str(ROOT / "recipes" / recipe)]
    cmd += [a for item in small for a in ("--set", item)]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    rows = step_rows(tmp_path / "run")
    assert len(rows) >= 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows[:3])
    assert rows[0]["time/rollout_s"] > 0 and "eval/accuracy" in rows[-1]


@pytest.mark.vllm
def test_vllm_greedy_after_latent_prefix_equals_hf_on_cuda(tmp_path):
    pytest.importorskip("vllm")
    from test_vllm import wide_tiny_model

    from neuralese.config import NeuraleseConfig, VLLMConfig
    from neuralese.policy import NeuralesePolicy
    from neuralese.vllm_engine import VLLMEngine

    folder = wide_tiny_model(tmp_path / "model")
    config = NeuraleseConfig(mode="latent", num_thoughts=3)
    policy = NeuralesePolicy.from_pretrained(folder, config=config, device="cuda")
    with torch.no_grad():
        policy.adapter.gate_logit.fill_(2.0)
    engine = VLLMEngine(policy, VLLMConfig(gpu_memory_utilization=0.2, max_model_len=128), 0, tmp_path / "e")
    ids, mask = policy.encode(["12+34=", "7+8=", "100+200=", "5+55="])
    hf = policy.rollout(ids, mask, 6, 0.0)
    assert engine.generate(policy, ids, mask, 6, 0.0).completion_ids() == hf.completion_ids()
