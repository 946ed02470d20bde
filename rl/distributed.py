"""Scale-out plumbing for the trainer: data-parallel shards and gathers, and the DeepSpeed ZeRO engine.

Launch lines (accelerate configs in `recipes/accelerate/`, each with its own header):

    accelerate launch --config_file recipes/accelerate/ddp_cpu.yaml -m neuralese.cli train RECIPE.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml   -m neuralese.cli train RECIPE.yaml
    accelerate launch --config_file recipes/accelerate/zero3.yaml   -m neuralese.cli train RECIPE.yaml

Data parallel. `prompts_per_step` and `samples_per_prompt` are global sizes: process r rolls
out the r-th contiguous block of whole groups, so gathering the rewards rank by rank gives
back the one-process batch in its own order, and group (or batch) statistics see the whole
step. Gradients are averaged by hand in the plain path (`Trainer.optimizer_step`), because
the policy is driven through `policy.model(...)` calls that a DDP wrapper's `forward` would
never see; the loss normalizers are whole-step counts divided by the world size, so the
average is the gradient of the global loss (see `neuralese.algorithms.aggregate`).

DeepSpeed. accelerate's `prepare` turns the trained modules into a ZeRO engine, which then
owns backward, gradient reduction, clipping and the optimizer step. Both the policy (model
and feedback adapter) and the PPO value head go into the engine as one module, so every
parameter the optimizer holds is one the engine manages. ZeRO-3 partitions parameters and
gathers them in module hooks on forward; our direct `policy.model(...)`,
`policy.embed(...)` and `adapter.proj(...)` calls are module calls, so those hooks fire.
The adapter's gate `lambda` (and the layer mix) are read as bare parameters, outside any
module's forward, so they must stay whole: ZeRO-3 keeps parameters below
`stage3_param_persistence_threshold` unpartitioned, and `prepare_deepspeed` checks that
they were.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs
from torch import nn

from neuralese.checkpoint import ENGINE_TAG, rng_state
from neuralese.config import RunConfig
from neuralese.errors import ConfigError, NeuraleseError, PeerLost, TrainingError
from neuralese.modes import get_mode
from neuralese.policy import NeuralesePolicy


def collective(fn):
    """`fn` takes part in a collective: a failure there (a peer that was killed, crashed or cannot be
    reached; gloo and NCCL raise RuntimeError) becomes `PeerLost`, naming this process. A process
    that dies closes its connections, so the others learn it at their next collective; one that
    hangs is given up on after `rl.collective_timeout_s`."""

    @functools.wraps(fn)
    def wrapped(accelerator: Accelerator, *args, **kwargs):
        try:
            return fn(accelerator, *args, **kwargs)
        except RuntimeError as e:
            if accelerator.num_processes == 1 or isinstance(e, NeuraleseError):
                raise
            detail = " ".join(str(e).split())[:240]
            raise PeerLost(
                f"process {accelerator.process_index} of {accelerator.num_processes} lost the others in a "
                f"collective ({fn.__name__}: {detail}): another process of the run stopped (killed, out of "
                "memory, crashed) or cannot be reached; the launcher's report names which"
            ) from e

    return wrapped


def make_accelerator(cfg: RunConfig, out: Path) -> Accelerator:
    """The run's accelerator, checked: the step's prompts divide among its processes, and a DeepSpeed
    config fits the run (`check_deepspeed`)."""
    # accelerate only switches DeepSpeed on when not forced to the CPU; DeepSpeed then finds the CPU itself.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available() and not deepspeed_requested(),
        log_with=cfg.log.trackers or None,
        project_dir=str(out),
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.rl.collective_timeout_s))],
    )
    world = accelerator.num_processes
    if cfg.rl.prompts_per_step % world:
        raise ConfigError(
            f"rl.prompts_per_step ({cfg.rl.prompts_per_step}) must be divisible by the number of processes ({world})"
        )
    if uses_deepspeed(accelerator):
        check_deepspeed(accelerator, cfg)
    return accelerator


def deepspeed_requested() -> bool:
    """True under `accelerate launch` with a DeepSpeed config (accelerate's own switch)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def local_block(n_global: int, rank: int, world: int) -> slice:
    """This process's contiguous share of `n_global` items (`n_global` divisible by `world`)."""
    per = n_global // world
    return slice(rank * per, (rank + 1) * per)


@collective
def gather(accelerator: Accelerator, x: torch.Tensor) -> torch.Tensor:
    """[n] on every process -> [n * world], rank by rank (the one-process order, see above)."""
    if accelerator.num_processes == 1:
        return x
    # gloo cannot all-gather bool tensors; floats carry bools and NaN ("does not apply") alike.
    # Reward tensors live on the CPU, and NCCL gathers only device tensors.
    x = x.float() if x.dtype == torch.bool else x
    return accelerator.gather(x.to(accelerator.device))


@collective
def gather_rng_states(accelerator: Accelerator, generator: torch.Generator) -> list[dict]:
    """Every process's random states, in rank order (a collective; each process gets the list)."""
    mine = rng_state(generator)
    if accelerator.num_processes == 1:
        return [mine]
    from accelerate.utils import gather_object

    return gather_object([mine])


@collective
def gather_states(accelerator: Accelerator, mine: dict) -> list[dict]:
    """Every process's `mine` (tensors, numbers, strings: a loop's own per-process state), in rank order
    (a collective; each process gets the list)."""
    if accelerator.num_processes == 1:
        return [mine]
    from accelerate.utils import gather_object

    return gather_object([mine])


@collective
def write_engine_state(accelerator: Accelerator, engine, target: Path) -> Path:
    """DeepSpeed's own checkpoint of `engine`, every process writing its part, into a staging
    folder next to checkpoint folder `target` (named after the main process, like the folder
    `neuralese.io.atomic_dir` builds, so a killed writer's leftovers are cleared alike); returns it.

    A collective. The processes must share a file system, as they do for accelerate's own state
    saving: the main process moves the folder into the checkpoint once every part is written."""
    from accelerate.utils import broadcast_object_list

    pid = broadcast_object_list([os.getpid()])[0] if accelerator.num_processes > 1 else os.getpid()
    staging = target.parent / f".{target.name}.tmp-{pid}-engine"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    engine.save_checkpoint(str(staging), tag=ENGINE_TAG, save_latest=False)
    accelerator.wait_for_everyone()
    return staging


@collective
def average_gradients(accelerator: Accelerator, params: list[nn.Parameter]) -> None:
    """Every process's gradients replaced by their mean over processes (the plain data-parallel path)."""
    if accelerator.num_processes > 1:
        for p in params:
            p.grad = accelerator.reduce(p.grad, reduction="mean")


class TrainedModules(nn.Module):
    """Every trained module under one root, the module a DeepSpeed engine wraps."""

    def __init__(self, policy: NeuralesePolicy, value_head: nn.Module | None):
        super().__init__()
        self.policy = policy
        self.value_head = value_head


@collective
def all_sum(accelerator: Accelerator, x: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over processes (the tensor itself with one process)."""
    return accelerator.reduce(x, reduction="sum") if accelerator.num_processes > 1 else x


def nonfinite_parameters(
    accelerator: Accelerator,
    optimizer: torch.optim.Optimizer,
    modules: dict[str, nn.Module | None],
    group_of: dict[int, int],
) -> list[tuple[str, str, float]]:
    """(parameter name, optimizer group name, its learning rate) of every trained weight that is NaN
    or infinite on any process, in one device sync; names are prefixed by their key in `modules`.
    `group_of` maps a parameter's id to its optimizer group's index, taken before DeepSpeed's
    `prepare` (ZeRO-3 swaps the groups' parameters for flat partitions). Under ZeRO-3 a parameter
    holds a placeholder; this process's shard is `ds_tensor`."""
    named = [
        (f"{prefix}{n}", p)
        for prefix, m in modules.items()
        if m is not None
        for n, p in m.named_parameters()
        if id(p) in group_of
    ]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(getattr(p, "ds_tensor", p)).all() for _, p in named])  # [P]
    bad = all_sum(accelerator, (~finite).to(torch.int32)).tolist()  # every process stops alike
    groups = [optimizer.param_groups[group_of[id(p)]] for _, p in named]
    return [(n, g["name"], g["lr"]) for (n, _), g, b in zip(named, groups, bad) if b]


def all_mean(accelerator: Accelerator, value: float) -> float:
    """Mean of a number over processes."""
    if accelerator.num_processes == 1:
        return value
    total = all_sum(accelerator, torch.tensor(value, device=accelerator.device)).item()
    return total / accelerator.num_processes


def deepspeed_step(engine, scheduler, loss_total: float, step: int) -> float:
    """The engine reduces, clips and steps. It cannot be told to skip an update afterwards, so
    a non-finite one stops the run at once rather than after `rl.max_nonfinite_steps`."""
    engine.step()
    norm = engine.get_global_grad_norm()
    grad_norm = float(norm) if norm is not None else 0.0  # None: ZeRO did not compute it
    if not (math.isfinite(loss_total) and math.isfinite(grad_norm)):
        raise TrainingError(
            f"step {step}: non-finite loss ({loss_total}) or gradient norm ({grad_norm}) "
            "under DeepSpeed, which has already applied the update. Lower rl.learning_rate or "
            "rl.feedback_learning_rate, or set rl.max_grad_norm, and restart from the last checkpoint."
        )
    scheduler.step()
    return grad_norm


def check_deepspeed(accelerator: Accelerator, cfg: RunConfig) -> None:
    """Refuse, before any model is built, the DeepSpeed settings the trainer cannot honour."""
    launched = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if launched != accelerator.num_processes:
        # accelerate (1.15) takes DeepSpeed processes without a GPU for one: every one would act as rank 0.
        raise ConfigError(
            f"DeepSpeed was launched with {launched} processes, but accelerate counts {accelerator.num_processes}: "
            "accelerate supports DeepSpeed over several processes only on GPUs. On CPU run DeepSpeed with "
            "--num_processes 1, or data parallel with recipes/accelerate/ddp_cpu.yaml."
        )
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    for section in ("bf16", "fp16"):
        if ds.get(section, {}).get("enabled") in (True, "true"):
            raise ConfigError(
                f"DeepSpeed config enables {section}: DeepSpeed would cast every parameter, the float32 "
                "feedback adapter included. Set accelerate's mixed_precision to 'no' and load the model in "
                "half precision with model.dtype instead."
            )
    if (
        zero_stage(accelerator) == 3
        and get_mode(cfg.neuralese).feeds_back
        and cfg.neuralese.space in ("embedding", "mix")
    ):
        raise ConfigError(
            f"neuralese.space {cfg.neuralese.space!r} under ZeRO-3: an embedding-space thought reads the whole "
            "embedding table outside any module forward, where ZeRO-3 keeps only this process's partition. "
            "Use ZeRO-2, data parallel, or neuralese.space: hidden."
        )
    if zero_stage(accelerator) == 3 and cfg.rl.beta > 0 and cfg.model.lora.r == 0:
        raise ConfigError(
            "rl.beta > 0 under ZeRO-3 needs LoRA (model.lora.r > 0): the KL reference is then the policy with "
            "its adapters off; a frozen full copy of a partitioned model is not supported."
        )


def prepare_deepspeed(
    accelerator: Accelerator,
    cfg: RunConfig,
    policy: NeuralesePolicy,
    value_head: nn.Module | None,
    optimizer: torch.optim.Optimizer,
):
    """The ZeRO engine over policy (+ value head), set up for the trainer's own micro-batching.

    The trainer marks the accumulation boundary itself (its number of micro-batches depends on
    the step's batch), so DeepSpeed's own accumulation count is 1 and its clipping is
    `rl.max_grad_norm`. The learning-rate scheduler stays ours: it drives the wrapped torch
    optimizer's param groups, which the ZeRO optimizer steps with.
    """
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = cfg.rl.micro_batch_per_device
    ds["gradient_accumulation_steps"] = 1
    ds["train_batch_size"] = cfg.rl.micro_batch_per_device * accelerator.num_processes
    ds["gradient_clipping"] = cfg.rl.max_grad_norm
    engine, _ = accelerator.prepare(TrainedModules(policy, value_head), optimizer)
    if zero_stage(accelerator) == 3:
        _keep_bare_parameters_whole(policy, ds)
    return engine


def zero_stage(accelerator: Accelerator) -> int:
    if not uses_deepspeed(accelerator):
        return 0
    return int(
        accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0)
    )


def _keep_bare_parameters_whole(policy: NeuralesePolicy, ds: dict) -> None:
    """The adapter's gate (and layer mix) are read outside any module forward, where no ZeRO-3 hook
    gathers them. Small enough to be "persistent", they are gathered here once; ZeRO-3 never
    releases persistent parameters and gathers them again after every optimizer step."""
    adapter = policy.adapter
    bare = {"gate_logit": adapter.gate_logit}
    for name in ("layer_logits", "mix_logit", "pause_vector"):
        if hasattr(adapter, name):
            bare[name] = getattr(adapter, name)
    for name, p in bare.items():
        if not getattr(p, "ds_persist", False):
            threshold = ds.get("zero_optimization", {}).get(
                "stage3_param_persistence_threshold", "1e5, the default"
            )
            raise ConfigError(
                f"ZeRO-3 would partition the feedback adapter's {name} ({p.ds_numel} values), which is read outside "
                f"any module forward. Raise zero_optimization.stage3_param_persistence_threshold (now {threshold}) "
                f"to at least {p.ds_numel} in the DeepSpeed config."
            )
    _gather_persistent(list(bare.values()))


@contextlib.contextmanager
def full_parameters(accelerator: Accelerator, *modules: nn.Module | None) -> Iterator[None]:
    """Inside, ZeRO-3 parameters of `modules` hold their full values (for saving or syncing).

    A collective: every process must enter. A no-op without ZeRO-3.
    """
    if zero_stage(accelerator) != 3:
        yield
        return
    import deepspeed

    params = [p for m in modules if m is not None for p in m.parameters()]
    # Persistent parameters (the gate among them) must stay whole, and GatheredParameters would
    # partition everything it gathered on exit: gather those outright, the others for the block.
    _gather_persistent(params)
    transient = [p for p in params if not getattr(p, "ds_persist", False)]
    with deepspeed.zero.GatheredParameters(transient, modifier_rank=None):
        yield


def _gather_persistent(params: list[nn.Parameter]) -> None:
    """All-gather ZeRO-3's persistent parameters among `params`; ZeRO-3 then never releases them."""
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    missing = [
        p for p in params if getattr(p, "ds_persist", False) and p.ds_status != ZeroParamStatus.AVAILABLE
    ]
    if missing:
        missing[0].all_gather(missing)
