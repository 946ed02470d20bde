"""Stage 1: RL with continuous-thought feedback (GRPO family, PPO, RAFT), on accelerate.

Launch: `neuralese train RECIPE.yaml [--set key=value ...] [--out DIR] [--resume]`
        `accelerate launch --config_file recipes/accelerate/CONFIG.yaml -m neuralese.cli train RECIPE.yaml`
        for several processes or DeepSpeed ZeRO (neuralese.distributed says how they split the work).

One step, top to bottom in `Trainer.step`:

    prompts   next `prompts_per_step` problems of the train split, each repeated G times
    rollout   thoughts and answers sampled with the KV cache (neuralese.rollout), or the answers by
              vLLM after the policy's thoughts (neuralese.vllm_engine, `rl.rollout_engine: vllm`)
    reward    reward functions on the answers, weighted sum (neuralese.rewards.combine)
    advantage group-relative (GRPO, Dr.GRPO, RLOO) or GAE with a value head (PPO); for RAFT the
              filter's keep weights, and the samples kept, or a round's pool (neuralese.flywheel)
    update    `num_iterations` optimizer steps; each recomputes the log-probs with gradient
              through the latent chain truncated to `tbptt_window` (neuralese.recompute),
              accumulating the loss over micro-batches with whole-step normalizers
    schedule  the curriculum's next stage when this one is done (neuralese.curriculum)
    log       metrics.jsonl, completions.jsonl, trackers, progress bar
    save      checkpoints/step-N, atomically

Departures from TRL's GRPOTrainer: the old log-probs are the rollout's own sampling
log-probs (equal to a recompute within 1e-5, see tests), so the first update's ratio is
1 without a second forward pass; and the KL reference is the same policy with feedback
off (and LoRA adapters off), not a separate model, whenever LoRA is used.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import get_scheduler, set_seed

from neuralese.build import ValueHead, build_policy, build_reference, build_rewards, check_run, param_groups
from neuralese.checkpoint import list_checkpoints
from neuralese.config import RunConfig, save_config
from neuralese.console import Console, banner, evaluation_line, parameter_line
from neuralese.curriculum import Curriculum
from neuralese.distributed import (
    all_mean,
    all_sum,
    average_gradients,
    deepspeed_step,
    full_parameters,
    gather,
    local_block,
    make_accelerator,
    nonfinite_parameters,
    prepare_deepspeed,
    uses_deepspeed,
)
from neuralese.dynamic import Drawn, DynamicSampler
from neuralese.envs import correctness_check, load_split, make_env
from neuralese.errors import TrainingError
from neuralese.evaluate import evaluate_task, run_task
from neuralese.feedback import NO_GATE
from neuralese.flywheel import Flywheel
from neuralese.io import check_output_dir
from neuralese.models import check_model_folder
from neuralese.preflight import run_preflight
from neuralese.resume import RunParts, check_same_recipe, guarded, recipe_changes, restore_run, save_run
from neuralese.rewards.combine import compute_rewards
from neuralese.rollout import Rollout
from neuralese.run_folder import (
    base_model,
    copy_base,
    fresh_start,
    prepare_run_dir,
    resolve_paths,
    with_model_path,
)
from neuralese.runlog import RunLog
from neuralese.step_loss import StepLoss
from neuralese.step_metrics import completion_rows, rollout_metrics
from neuralese.vllm_engine import VLLMEngine, with_policy_logprobs


@dataclass
class TrainerState:
    """What the loop itself owns and a checkpoint keeps (trainer_state.json), besides weights,
    optimizer, schedule and random streams."""

    step: int = 0
    """RL steps taken."""
    epoch: int = 0
    """Passes over the train split begun (each has its own seeded order)."""
    cursor: int = 0
    """Problems of this epoch's order already taken."""
    nonfinite_in_row: int = 0
    """Updates in a row skipped for a non-finite loss or gradient."""
    nonfinite_total: int = 0
    """Updates skipped in the whole run."""


class Trainer:
    """Holds a run's state; `train()` runs the loop."""

    def __init__(self, cfg: RunConfig, resume: bool = False):
        # A config built in Python gets the recipe's checks; the run folder, the model folder and the
        # data are checked too (neuralese.preflight), all before the model loads.
        check_run(cfg)
        self.cfg = cfg = resolve_paths(cfg)  # config.yaml then reads the same from any folder
        self.out = check_output_dir(cfg.output_dir, "output_dir (--out)")
        fresh = fresh_start(self.out, resume)
        base = cfg.model.path if fresh else base_model(self.out, cfg)
        check_model_folder(base, tiny=cfg.model.tiny is not None)
        self.accelerator = make_accelerator(cfg, self.out)
        self.console = Console("neuralese train", enabled=self.accelerator.is_main_process)
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        prepare_run_dir(self.out, resume)
        set_seed(cfg.seed)
        self.data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
        device = self.accelerator.device
        self.env = make_env(cfg.env.name, cfg.env.args)
        self.train_rows = load_split(self.env, "train", cfg.env.train_size, self.data_seed, cfg.env.name)
        self.reward_funcs, self.reward_weights = build_rewards(cfg, self.env, device)
        # A changed recipe is refused (or its changes named) before the model loads.
        self.resume_notices = [] if fresh else check_same_recipe(self.out, recipe_changes(self.out, cfg))
        data = (self.env, self.train_rows, self.data_seed, self.reward_funcs, self.reward_weights)
        for warning in run_preflight(cfg, *data, model=base):  # before the model loads
            self.console.notice(f"warning: {warning}")
        if fresh and self.accelerator.is_main_process:
            copy_base(cfg, self.out)  # the run's own copy: its checkpoints open wherever the base goes
        self.accelerator.wait_for_everyone()
        base = base_model(self.out, cfg)
        self.console.table(*banner(cfg, self.out, base, self.accelerator, resume))
        self.policy = build_policy(with_model_path(cfg, base), device)
        self.console.say(f"  {'size':<9}  {parameter_line(self.policy.model, self.policy.adapter)}")
        self.curriculum = Curriculum(cfg.curriculum, self.policy.config)  # it sets the number of thoughts
        self.reference = build_reference(cfg, self.policy)
        self.value_head = ValueHead(self.policy.hidden_size).to(device) if cfg.rl.algorithm == "ppo" else None
        self.loss = StepLoss(
            cfg.rl, cfg.neuralese.tbptt_window, cfg.rl.micro_batch_per_device, self.value_head
        )
        total = lambda x: all_sum(self.accelerator, x)  # noqa: E731
        self.flywheel = Flywheel(cfg.rl, cfg.seed, total, self.policy.pad_token_id)  # what updates learn from
        self.sampler = (  # which drawn groups a step learns from
            DynamicSampler(
                cfg.rl.samples_per_prompt, cfg.rl.dynamic_sampling_max_draws, total, self.policy.pad_token_id
            )
            if cfg.rl.dynamic_sampling
            else None
        )
        self._build_optimizer()
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + self.rank)
        self.state = TrainerState()
        self.log = RunLog(self.out, self.accelerator, enabled=self.accelerator.is_main_process)
        if resume:
            self._resume()
        self.vllm = None
        if cfg.rl.rollout_engine == "vllm":
            with full_parameters(self.accelerator, self.policy):  # vLLM starts from the full weights
                seed, folder = cfg.seed * 1000 + self.rank, self.out / f"vllm-rank{self.rank}"
                self.vllm = VLLMEngine(self.policy, cfg.vllm, seed, folder, self.world)
        if self.accelerator.is_main_process:
            save_config(cfg, self.out / "config.yaml")
        if cfg.log.trackers:
            self.accelerator.init_trackers("tensorboard")

    def _build_optimizer(self) -> None:
        """AdamW over the trained groups, its schedule, and under DeepSpeed the engine that owns both."""
        cfg = self.cfg
        self.optimizer = torch.optim.AdamW(
            param_groups(cfg, self.policy, self.value_head), weight_decay=cfg.rl.weight_decay
        )
        self.group_of = {id(p): i for i, g in enumerate(self.optimizer.param_groups) for p in g["params"]}
        steps = max(1, cfg.rl.steps * cfg.rl.num_iterations)
        self.scheduler = get_scheduler(cfg.rl.lr_scheduler, self.optimizer, cfg.rl.warmup_steps, steps)
        self.engine = None  # the DeepSpeed engine, which then owns backward and the optimizer step
        if uses_deepspeed(self.accelerator):
            self.engine = prepare_deepspeed(
                self.accelerator, cfg, self.policy, self.value_head, self.optimizer
            )

    # ------------------------------------------------------------------ the loop

    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run to `rl.steps` (or stop after `stop_after` steps of this call, checkpointed, for
        preemptible schedules); returns the final evaluation, and under `start` the one at step 0."""
        cfg = self.cfg
        last = cfg.rl.steps if stop_after is None else min(cfg.rl.steps, self.state.step + stop_after)
        final = start = None
        with self.console.progress(cfg.rl.steps, self.state.step, "rl", "step") as bar:
            if self.state.step == 0 and cfg.log.eval_at_start:  # what the model scores before RL
                start = self.evaluate(0)
                self.log.hold(0, start)  # written with step 1: a run that fails at once leaves no log
            while self.state.step < last:
                metrics = self.guarded(self.step)
                step = self.state.step
                if cfg.log.eval_every and step % cfg.log.eval_every == 0 and step != cfg.rl.steps:
                    metrics.update(self.evaluate(step, sampled=False))  # greedy on the way: cheap
                # After the stage's evaluation; under dynamic sampling the reward of every drawn sample.
                metrics.update(self.schedule(metrics.get("sampling/reward_mean", metrics["reward/mean"])))
                if step == cfg.rl.steps:  # after the schedule: the stage the last checkpoint holds
                    final = self.evaluate(step)
                    metrics.update(final)
                if step % cfg.log.every_steps == 0 or step == cfg.rl.steps:
                    self.log.metrics(step, metrics)
                if step % cfg.log.save_every == 0 or step in (cfg.rl.steps, last):
                    self.guarded(self.save)
                bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['accuracy']:.3f}")
                self.console.phase(None)
                bar.update(1)
        self.log.flush()  # rl.steps 0: the evaluation before RL is the run's only one
        final = final or (start if cfg.rl.steps == 0 else None)
        if self.state.step < cfg.rl.steps:
            return {}
        final = final or self.evaluate(self.state.step)  # a finished run resumed: its evaluation again
        start = self.log.evaluation(0)
        notes = {} if self.policy.adapter.has_gate else {"feedback/gate_mean_abs": NO_GATE}
        self.log.report(title=f"{cfg.env.name} / {cfg.neuralese.mode} / {cfg.rl.algorithm}", notes=notes)
        if self.vllm is not None:
            self.vllm.close()
        self.accelerator.end_training()
        return {**final, **({"start": start} if start else {})}

    def step(self) -> dict[str, Any]:
        """One RL step: prompts, rollout, reward, advantage, update; counted in `state.step` once done."""
        if self.sampler is None:
            batch, sampled = self.draw(), {}
        else:  # draws until the step's groups have reward spread (neuralese.dynamic)
            batch, sampled = self.sampler.collect(self.draw)
        rows, ro, texts, rewards = batch.rows, batch.rollout, batch.texts, batch.rewards
        t1 = time.perf_counter()
        self.console.phase("reward")
        advantages = self.advantages(rewards)
        # The rollout itself; for RAFT the samples its filter kept, or at a round's end the round's pool.
        batches, filtered = self.flywheel.batches(ro, advantages, rewards, batch.correct)
        t2 = time.perf_counter()
        self.console.phase("update")
        with self.accelerator.autocast():
            metrics = self.flywheel.merge([self.update(b.rollout, b.advantages, b.rewards) for b in batches])
        if self.vllm is not None:
            with full_parameters(self.accelerator, self.policy):  # the new weights, for the next rollout
                self.vllm.sync(self.policy)
            metrics["rollout/vllm_logprob_gap_max"] = self.vllm_gap
        t3 = time.perf_counter()
        metrics.update(self.rollout_metrics(ro, rewards, batch.per_func, batch.correct), **batch.stats)
        metrics.update(filtered, **sampled)
        # The draws' own times (summed over them), the advantages and filter counted with the rewards.
        metrics["time/reward_s"] += t2 - t1
        metrics["time/update_s"] = t3 - t2
        if self.state.step % self.cfg.log.completions_every == 0:
            rows_out = completion_rows(rows, texts, ro, rewards, self.cfg.rl.samples_per_prompt)
            self.log.completions(self.state.step + 1, rows_out)
        self.state.step += 1
        return metrics

    def draw(self) -> Drawn:
        """The next prompts (this process's share), their rollout and rewards."""
        rows = self.next_prompts()
        t0 = time.perf_counter()
        self.console.phase("rollout")
        # bf16 math over float32 weights under `accelerate launch --mixed_precision bf16`; else a no-op.
        with self.accelerator.autocast():
            ro, texts = self.rollout(rows)
        t1 = time.perf_counter()
        self.console.phase("reward")
        rewards, per_func, correct, stats = self.score(rows, texts, ro)
        stats.update({"time/rollout_s": t1 - t0, "time/reward_s": time.perf_counter() - t1})
        return Drawn(rows, ro, texts, rewards, per_func, correct, stats)

    def schedule(self, reward_mean: float) -> dict[str, Any]:
        """The curriculum's stage of the step just taken; the next stage's thoughts when it ended a stage
        (a checkpoint saved after it continues in the next stage)."""
        if not self.curriculum.enabled:
            return {}
        m = {"curriculum/stage": self.curriculum.stage}
        if self.curriculum.observe(reward_mean):
            m["curriculum/advanced"] = 1
            self.console.notice(
                f"curriculum: stage {self.curriculum.stage} of {self.cfg.curriculum.stages} from step "
                f"{self.state.step + 1}: {self.curriculum.num_thoughts} thoughts, "
                f"{self.curriculum.budget(self.cfg.rl.max_new_tokens)} answer tokens"
            )
        return m

    # ------------------------------------------------------------------ data and rollout

    def next_prompts(self) -> dict[str, list]:
        """This process's share of the next `prompts_per_step` problems, in a seeded order per epoch."""
        n = self.cfg.rl.prompts_per_step
        picked = []
        while len(picked) < n:
            order = torch.randperm(
                len(self.train_rows),
                generator=torch.Generator().manual_seed(self.data_seed + self.state.epoch),
            )
            take = order[self.state.cursor : self.state.cursor + n - len(picked)].tolist()
            picked += take
            self.state.cursor += len(take)
            if self.state.cursor >= len(self.train_rows):
                self.state.epoch += 1
                self.state.cursor = 0
        mine = picked[local_block(n, self.rank, self.world)]
        return self.train_rows.select(mine).to_dict()

    def rollout(self, rows: dict[str, list]) -> tuple[Rollout, list[str]]:
        """G samples per prompt, groups contiguous."""
        G = self.cfg.rl.samples_per_prompt
        prompts = [p for p in rows["prompt"] for _ in range(G)]
        self.policy.eval()
        ids, mask = self.policy.encode(prompts)
        budget = self.curriculum.budget(self.cfg.rl.max_new_tokens)
        if self.vllm is None:
            ro = self.policy.rollout(ids, mask, budget, self.cfg.rl.temperature, self.generator)
        else:
            ro = self.vllm.generate(self.policy, ids, mask, budget, self.cfg.rl.temperature, self.generator)
        if self.vllm is not None:  # the policy's own log-probs: the first update's ratio is then exactly 1
            ro, self.vllm_gap = with_policy_logprobs(self.policy, ro, self.cfg.rl.micro_batch_per_device)
        self.policy.train()
        return ro, self.policy.decode(ro)

    def score(self, rows: dict[str, list], texts: list[str], ro: Rollout):
        """Weighted rewards [N], each function's values, correctness [N] (the env's check >= 1), call stats."""
        G = self.cfg.rl.samples_per_prompt
        prompts = [p for p in rows["prompt"] for _ in range(G)]
        columns = {k: [v for v in vals for _ in range(G)] for k, vals in rows.items() if k != "prompt"}
        columns.update(ro.reward_columns())
        timeout, stats = self.cfg.rl.reward_timeout_s, {}
        total, per_func = compute_rewards(
            self.reward_funcs, self.reward_weights, prompts, texts, columns, timeout, stats
        )
        check = correctness_check(self.env)
        if check in self.reward_funcs:
            correct = torch.nan_to_num(list(per_func.values())[self.reward_funcs.index(check)], nan=0.0) >= 1
        else:
            correct = compute_rewards([check], [1.0], prompts, texts, columns, timeout)[0] >= 1
        return total.to(ro.logprobs.device), per_func, correct, stats

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor | None:
        """[N] group-relative advantages of this process's samples (None for PPO, whose advantages
        need the critic; for RAFT the filter's keep weights, 1 or 0), from the rewards of the whole
        step gathered over processes."""
        if self.cfg.rl.algorithm == "ppo":
            return None
        everyone = gather(self.accelerator, rewards)  # [N * world], the one-process order
        return self.loss.advantages(everyone)[local_block(everyone.numel(), self.rank, self.world)]

    # ------------------------------------------------------------------ update

    def update(self, ro: Rollout, advantages: torch.Tensor | None, rewards: torch.Tensor) -> dict[str, Any]:
        """`num_iterations` optimizer steps on this rollout batch (one in RAFT's round mode, whose epochs
        are batches of the pool), each accumulating every micro-batch."""
        rl = self.cfg.rl
        mask = self.loss.counted(ro, advantages)  # [N, L] the loss positions (RAFT: of kept samples)
        # Whole-step normalizers (over all processes, divided by their number: DDP averages).
        norm = dict(
            num_tokens=all_sum(self.accelerator, mask.sum().float()) / self.world,
            num_sequences=all_sum(self.accelerator, mask.any(-1).sum().float()) / self.world,
            max_length=self.curriculum.budget(rl.max_new_tokens) + self.policy.mode.thought_positions,
        )
        if norm["num_tokens"] == 0:  # RAFT kept no sample on any process: nothing to learn, no optimizer step
            return {"update/skipped": 1, "lr": self.scheduler.get_last_lr()[0]}
        targets = self.loss.targets(self.policy, self.reference, ro, advantages, rewards, norm)
        micro = self.loss.micro_batches(ro.input_ids.shape[0])
        sums: dict[str, float] = {}
        passes = 1 if self.flywheel.rounds else rl.num_iterations
        for _ in range(passes):
            if self.engine is None:  # the engine clears its own (partitioned) gradients after each step
                self.optimizer.zero_grad(set_to_none=True)
            loss_total, latent_sq = 0.0, 0.0
            for j, idx in enumerate(micro):
                loss, m, probe = self.loss(self.policy, ro.select(idx), idx, targets)
                self.backward(loss, last=j == len(micro) - 1)
                loss_total += loss.item()
                if probe is not None and probe.grad is not None:
                    latent_sq += probe.grad.float().pow(2).sum().item()
                weight = mask[idx].sum().item() / max(1, mask.sum().item()) / passes
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * weight
            # The step's loss: every process takes the same skip decision.
            loss_total = all_mean(self.accelerator, loss_total)
            sums["grad_norm"] = self.optimizer_step(loss_total)
            self.check_weights()
            sums["loss"] = sums.get("loss", 0.0) + loss_total / passes
            sums["feedback/latent_grad_norm"] = math.sqrt(latent_sq)
        sums["lr"] = self.scheduler.get_last_lr()[0]
        return sums

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        """Accumulate one micro-batch's gradients; `last` marks the step's final micro-batch."""
        if self.engine is None:
            self.accelerator.backward(loss)
            return
        # Our boundary, not DeepSpeed's count; and no division by its accumulation steps: the
        # loss normalizers already cover the whole step.
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss, scale_wrt_gas=False)

    def optimizer_step(self, loss_total: float) -> float:
        """Average gradients over processes, clip, skip non-finite steps; returns the gradient norm."""
        if self.engine is not None:
            return deepspeed_step(self.engine, self.scheduler, loss_total, self.state.step + 1)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        average_gradients(self.accelerator, params)
        max_norm = self.cfg.rl.max_grad_norm or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()
        if math.isfinite(loss_total) and math.isfinite(grad_norm):
            try:
                self.optimizer.step()
            except RuntimeError as e:  # torch's words when a step size does not fit the weights' dtype
                if "without overflow" not in str(e):
                    raise
                lrs = ", ".join(f"{g['name']} {g['lr']:g}" for g in self.optimizer.param_groups)
                raise self.stop(
                    f"the optimizer cannot apply the update ({e}) at learning rates {lrs}"
                ) from None
            self.scheduler.step()
            self.state.nonfinite_in_row = 0
            return grad_norm
        self.optimizer.zero_grad(set_to_none=True)
        self.state.nonfinite_in_row += 1
        self.state.nonfinite_total += 1
        if self.state.nonfinite_in_row >= self.cfg.rl.max_nonfinite_steps:
            raise TrainingError(
                f"step {self.state.step + 1}: {self.state.nonfinite_in_row} updates in a row had a non-finite "
                f"loss ({loss_total}) or gradient norm ({grad_norm}) and were skipped (rl.max_nonfinite_steps). "
                "Lower rl.learning_rate or rl.feedback_learning_rate, or set rl.max_grad_norm."
            )
        return grad_norm

    def check_weights(self) -> None:
        """Stop when an update left a weight NaN or infinite. The skip in `optimizer_step` catches a
        non-finite loss or gradient; this catches a finite gradient the update itself overflowed
        (a learning rate too large for float32, a diverging step). No update can be taken back, so
        the run stops before this step is logged or checkpointed: the newest checkpoint stays good."""
        modules = {"": self.policy, "value_head.": self.value_head}
        bad = nonfinite_parameters(self.accelerator, self.optimizer, modules, self.group_of)
        if bad:
            (name, group, lr), count = bad[0], len(bad)
            raise self.stop(
                f"the update left {count} weight tensors NaN or infinite, first {name} "
                f"(optimizer group {group!r}, learning rate {lr:g})"
            )

    def guarded(self, fn):
        """`fn()`; a peer lost in one of its collectives ends the run with where to resume from."""
        return guarded(self.out, self.state.step + 1, fn)

    def stop(self, what: str) -> TrainingError:
        """The error that ends a run at this step, before anything of the step is logged or saved."""
        saved = list_checkpoints(self.out)
        return TrainingError(
            f"step {self.state.step + 1}: {what}. The run stops and this step is not checkpointed; the "
            f"newest checkpoint is {saved[-1] if saved else 'none'}. Lower rl.learning_rate or rl.feedback_learning_rate."
        )

    # ------------------------------------------------------------------ metrics, eval, save

    def rollout_metrics(self, ro: Rollout, rewards, per_func, correct) -> dict[str, Any]:
        """Reward and accuracy over the whole step (gathered); lengths and feedback of this process."""
        rewards, correct = gather(self.accelerator, rewards), gather(self.accelerator, correct)
        per_func = {name: gather(self.accelerator, values) for name, values in per_func.items()}
        m = rollout_metrics(self.policy, ro, rewards, per_func, correct, self.cfg.rl.samples_per_prompt)
        return {**m, "nonfinite_steps": self.state.nonfinite_total}

    def evaluate(self, step: int, sampled: bool = True) -> dict[str, Any]:
        """Greedy accuracy on `eval.n` test problems and, when `sampled`, pass@k with `eval.samples` (what
        `neuralese eval RUN` prints for the checkpoint of this step), printed above the bar."""
        self.console.phase("eval")
        self.policy.eval()
        with self.accelerator.autocast():
            task = run_task(self.cfg, self.curriculum, sampled)  # the budget of the curriculum's stage
            result = evaluate_task(self.policy, self.env, task, progress=False)
        self.policy.train()
        metrics = {f"eval/{k}": v for k, v in result.items() if isinstance(v, (int, float))}
        self.console.say(evaluation_line(step, metrics))
        return metrics

    # ------------------------------------------------------------------ state and checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The loop's own state as plain data: its counters and the curriculum's stage."""
        state: dict[str, Any] = dataclasses.asdict(self.state)
        if self.curriculum.enabled:
            state["curriculum"] = self.curriculum.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict` (a checkpoint's trainer_state.json)."""
        self.state = TrainerState(
            **{f.name: int(state[f.name]) for f in dataclasses.fields(TrainerState) if f.name in state}
        )
        if self.curriculum.enabled and "curriculum" in state:
            self.curriculum.load_state_dict(state["curriculum"])

    def parts(self) -> RunParts:
        """What a checkpoint holds besides the loop's own state."""
        return RunParts(
            self.policy,
            self.optimizer,
            self.scheduler,
            self.generator,
            self.value_head,
            self.engine,
            process=self.flywheel if self.flywheel.rounds else None,
        )

    def save(self) -> None:
        """Checkpoint this step (a collective: every process calls it)."""
        self.console.phase("save")
        save_run(
            self.accelerator,
            self.out,
            self.state.step,
            self.parts(),
            self.state_dict(),
            self.cfg.log.keep_checkpoints,
        )

    def _resume(self) -> None:
        """Continue from the newest complete checkpoint; a corrupted one is an error, never skipped."""
        ckpts = list_checkpoints(self.out)
        if not ckpts:
            self.console.notice(
                f"--resume: no complete checkpoint in {self.out / 'checkpoints'}; starting at step 0"
            )
            self.log.truncate(-1)  # the step-0 evaluation too: the run writes it again
            return
        self.load_state_dict(restore_run(self.accelerator, ckpts[-1], self.parts()))
        self.log.truncate(self.state.step)
        self.console.notice(
            f"--resume: continuing from {ckpts[-1]} (step {self.state.step} of {self.cfg.rl.steps})"
        )
        for notice in self.resume_notices:
            self.console.notice(notice)
