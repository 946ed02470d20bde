"""A process of a multi-process or DeepSpeed test, started by `accelerate launch` (tests/test_distributed.py).

accelerate launch --config_file CONFIG tests/dist_worker.py update RECIPE BATCH OUT
    this process's block of a fixed global rollout batch (BATCH, written by the test), one
    `Trainer.update`; rank 0 writes the parameters and the update's metrics to OUT
accelerate launch --config_file CONFIG tests/dist_worker.py train RECIPE OUT
    `Trainer.train()`; rank 0 writes the metrics, whether the weights moved, and how many
    parameters ZeRO-3 keeps partitioned, to OUT
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import load_file

from neuralese.checkpoint import list_checkpoints
from neuralese.config import load_config
from neuralese.distributed import full_parameters, local_block
from neuralese.trainer import Trainer


def update(recipe: str, batch_path: str, out: str) -> None:
    trainer = Trainer(load_config(recipe))
    batch = torch.load(batch_path, weights_only=False)
    ro, rewards = batch["rollout"], batch["rewards"]
    mine = local_block(rewards.numel(), trainer.rank, trainer.world)
    ro, rewards = ro.select(mine), rewards[mine]
    metrics = trainer.update(ro, trainer.advantages(rewards), rewards)
    if trainer.accelerator.is_main_process:
        params = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # processes on this machine (torchrun's)
        torch.save({"params": params, "metrics": metrics, "world": trainer.world, "local_world": local}, out)
    # Leave together and close the process group: a process that exits while another still holds it
    # can abort in gloo's threads ("terminate called without an active exception").
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def train(recipe: str, out: str) -> None:
    trainer = Trainer(load_config(recipe))
    # ZeRO-3 leaves a partitioned parameter's `data` empty outside the forward that gathers it.
    partitioned = sum(1 for p in trainer.policy.parameters() if hasattr(p, "ds_numel") and p.numel() == 0)
    with full_parameters(trainer.accelerator, trainer.policy):
        before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    final = trainer.train()  # ends the process group: what moved is read from the (gathered) checkpoint
    if not trainer.accelerator.is_main_process:
        return
    ckpt = list_checkpoints(trainer.out)[-1]
    after = {f"model.{k}": v for k, v in load_file(str(ckpt / "model.safetensors")).items()}
    after.update({f"adapter.{k}": v for k, v in load_file(str(ckpt / "feedback.safetensors")).items()})
    moved = sorted(n for n, v in after.items() if n in before and not torch.equal(before[n], v))
    result = {
        "world": trainer.world,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "partitioned_params": partitioned,
        "moved": moved,
        "final": final,
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    {"update": update, "train": train}[sys.argv[1]](*sys.argv[2:])
