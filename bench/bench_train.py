"""RL step time against TRL's GRPOTrainer, on the same tiny model, batch and lengths, in one run.

    .venv/bin/python -m bench.bench_train                     # CPU: 16 prompts x 8 samples, 16 new tokens
    .venv/bin/python -m bench.bench_train --device cuda --hidden 512 --layers 8

A step is everything from prompts to optimizer step: sampling, reward, log-prob
recompute, loss, backward, update. TRL's step is timed with a callback around its own
training step; ours is `Trainer.step()`. Both sample G completions per prompt with the
KV cache, at temperature 1, up to the same number of new tokens, from the same weights.
Printed as ratios (ours / TRL): feedback off, goal <= 1.1; latent mode with 6 thoughts and
TBPTT window 4, goal <= 1.6.

The other modes (`--modes`), as step-time ratios to their sequential peer in the same rounds:
`refine_k8` (8 thoughts in `--passes` parallel passes, window `--refine-window` passes) to `latent_k8`
(8 thoughts, window 4), goal <= 0.6; `channel` (window 4) to `hybrid` (window 4), goal <= 1.2; and
`refine_answer` (the answer in `--passes` passes) to `hybrid`. Run with `--new-tokens 32` for
32-token answers, as BENCHMARKS.md does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import ENV_ARGS, header, model_flags, report, tiny_model
from neuralese.config import (
    EnvConfig,
    EvalConfig,
    LogConfig,
    ModelConfig,
    NeuraleseConfig,
    RLConfig,
    RunConfig,
)
from neuralese.envs import make_env
from neuralese.rewards.match import exact_match
from neuralese.trainer import Trainer

ROWS = ("off", "latent", "latent_k8", "refine_k8", "hybrid", "channel", "refine_answer")
# The peer each row's step time is divided by.
PEERS = {"refine_k8": "latent_k8", "channel": "hybrid", "refine_answer": "hybrid"}


def row_settings(args: argparse.Namespace) -> dict[str, dict]:
    """Each row's neuralese settings; the refine rows take --passes and --refine-window."""
    refine = {"mode": "refine", "refine_passes": args.passes, "tbptt_window": args.refine_window}
    rows = {
        "off": {"mode": "off"},
        "latent": {"mode": "latent", "num_thoughts": 6, "tbptt_window": 4},
        "latent_k8": {"mode": "latent", "num_thoughts": 8, "tbptt_window": 4},
        "refine_k8": {**refine, "num_thoughts": 8},
        "hybrid": {"mode": "hybrid", "tbptt_window": 4},
        "channel": {"mode": "channel", "tbptt_window": 4},
        "refine_answer": {**refine, "refine_over": "answer"},
    }
    assert tuple(rows) == ROWS
    return rows


def time_trl(path: Path, args, root: Path) -> list[float]:
    """Step times of TRL's GRPOTrainer on the same model, batch and lengths (the first step warms up)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], 0.0

        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    data = make_env("addition", ENV_ARGS).dataset("train", args.prompts * (args.steps + 2), seed=0)
    config = GRPOConfig(
        output_dir=str(root / "trl"),
        max_steps=args.steps + 1,
        per_device_train_batch_size=args.prompts * args.samples,
        num_generations=args.samples,
        max_completion_length=args.new_tokens,
        temperature=1.0,
        learning_rate=1e-6,
        beta=0.0,
        loss_type="dapo",
        use_cpu=args.device == "cpu",
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
        gradient_checkpointing=False,  # TRL's default recomputes activations; ours does not
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, use_safetensors=True),
        reward_funcs=exact_match,
        args=config,
        train_dataset=data,
        processing_class=AutoTokenizer.from_pretrained(path, padding_side="left"),
        callbacks=[timer],
    )
    trainer.train()
    return timer.times[1:]  # the first step warms up


def time_ours(path: Path, args, root: Path, mode: str) -> list[float]:
    """Step times of `Trainer.step()` with row `mode`'s settings (the first step warms up)."""
    settings = row_settings(args)[mode]
    cfg = RunConfig(
        seed=0,
        output_dir=str(root / f"ours-{mode}"),
        model=ModelConfig(path=str(path)),
        env=EnvConfig(name="addition", args=ENV_ARGS, train_size=args.prompts * (args.steps + 2)),
        neuralese=NeuraleseConfig(**settings),
        rl=RLConfig(
            steps=args.steps + 1,
            prompts_per_step=args.prompts,
            samples_per_prompt=args.samples,
            micro_batch_per_device=args.prompts * args.samples,
            learning_rate=1e-6,
            max_new_tokens=args.new_tokens,
        ),
        eval=EvalConfig(n=1),
        log=LogConfig(trackers=[], save_every=10**6, completions_every=10**6),
    )
    trainer = Trainer(cfg)
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        trainer.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    """Time TRL and each chosen row in alternating rounds; report medians and ratios."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_train", description=__doc__.split("\n\n")[0])
    model_flags(p)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round (after one warm-up step)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each times TRL, ours off, ours latent")
    p.add_argument(
        "--modes", default="off,latent", help=f"rows of ours, comma-separated, of {', '.join(ROWS)}"
    )
    p.add_argument("--passes", type=int, default=3, help="refine mode's parallel passes T")
    p.add_argument("--refine-window", type=int, default=1, help="refine mode's TBPTT window (passes)")
    p.add_argument("--no-trl", action="store_true", help="skip TRL (for the peer ratios of the other modes)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in modes if m not in ROWS]:
        p.error(f"--modes: unknown {unknown}; choose from {', '.join(ROWS)}")
    modes += [PEERS[m] for m in modes if m in PEERS and PEERS[m] not in modes]
    root = Path(tempfile.mkdtemp())
    path = tiny_model(args, root / "model", max_positions=256)
    # Rounds take turns (TRL, then ours in each mode), so a change in machine load hits all alike;
    # each figure is the median over rounds of the median step time within a round.
    times: dict[str, list[float]] = {"trl": [], **{m: [] for m in modes}}
    for r in range(args.rounds):
        if not args.no_trl:
            times["trl"].append(statistics.median(time_trl(path, args, root / f"r{r}")))
        for mode in modes:
            times[mode].append(statistics.median(time_ours(path, args, root / f"r{r}", mode)))
    trl = statistics.median(times["trl"]) if times["trl"] else None
    results = {**header(args), "trl_step_s": trl}
    for mode in modes:
        ours = statistics.median(times[mode])
        results[f"ours_{mode}_step_s"] = ours
        if trl is not None:
            results[f"ours_{mode}_over_trl"] = ours / trl
    for mode, peer in PEERS.items():
        if mode in modes:
            results[f"{mode}_over_{peer}"] = statistics.median(times[mode]) / statistics.median(times[peer])
    report(results, 22, args.json)


if __name__ == "__main__":
    main()
