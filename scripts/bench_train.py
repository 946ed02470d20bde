"""RL step time against TRL's GRPOTrainer, on the same tiny model, batch and lengths, in one run.

    .venv/bin/python scripts/bench_train.py                   # CPU: 16 prompts x 8 samples, 16 new tokens
    .venv/bin/python scripts/bench_train.py --device cuda --hidden 512 --layers 8

A step is everything from prompts to optimizer step: sampling, reward, log-prob
recompute, loss, backward, update. TRL's step is timed with a callback around its own
training step; ours is `Trainer.step()`. Both sample G completions per prompt with the
KV cache, at temperature 1, up to the same number of new tokens, from the same weights.
Printed as ratios (ours / TRL): feedback off, goal <= 1.1; latent mode with 6 thoughts and
TBPTT window 4, goal <= 1.6.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs import env_texts, make_env  # noqa: E402
from rewards.match import exact_match  # noqa: E402
from rl.config import (  # noqa: E402
    EnvConfig,
    EvalConfig,
    LogConfig,
    ModelConfig,
    NeuraleseConfig,
    RLConfig,
    RunConfig,
    TinyModelConfig,
)
from rl.tiny import build_tiny_model, build_tokenizer, save_tiny  # noqa: E402
from rl.trainer import Trainer  # noqa: E402

ENV_ARGS = {"digits": 4}


def model_folder(args, root: Path) -> Path:
    env = make_env("addition", ENV_ARGS)
    tok = build_tokenizer(env_texts(env.dataset("train", 500, seed=0)))
    tiny = TinyModelConfig(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                           intermediate_size=4 * args.hidden, max_positions=256)  # fmt: skip
    return save_tiny(build_tiny_model(tok, tiny), tok, root / "model")


def time_trl(path: Path, args, root: Path) -> list[float]:
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
        output_dir=str(root / "trl"), max_steps=args.steps + 1, per_device_train_batch_size=args.prompts * args.samples,
        num_generations=args.samples, max_completion_length=args.new_tokens, temperature=1.0, learning_rate=1e-6,
        beta=0.0, loss_type="dapo", use_cpu=args.device == "cpu", bf16=False, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=0,
        gradient_checkpointing=False,  # TRL's default recomputes activations; ours does not
    )  # fmt: skip
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
    cfg = RunConfig(
        seed=0,
        output_dir=str(root / f"ours-{mode}"),
        model=ModelConfig(path=str(path)),
        env=EnvConfig(name="addition", args=ENV_ARGS, train_size=args.prompts * (args.steps + 2)),
        neuralese=NeuraleseConfig(mode=mode, num_thoughts=6, tbptt_window=4),
        rl=RLConfig(
            steps=args.steps + 1,
            prompts_per_step=args.prompts,
            samples_per_prompt=args.samples,
            micro_batch_per_device=args.prompts * args.samples,
            learning_rate=1e-6,
            max_new_tokens=args.new_tokens,
        ),  # fmt: skip
        eval=EvalConfig(n=1),
        log=LogConfig(trackers=[], save_every=10**6, completions_every=10**6),
    )
    trainer = Trainer(cfg)
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        trainer.step()
        trainer.state["step"] += 1
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round (after one warm-up step)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each times TRL, ours off, ours latent")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp())
    path = model_folder(args, root)
    # Rounds take turns (TRL, ours off, ours latent), so a change in machine load hits all alike;
    # each figure is the median over rounds of the median step time within a round.
    times: dict[str, list[float]] = {"trl": [], "off": [], "latent": []}
    for r in range(args.rounds):
        times["trl"].append(statistics.median(time_trl(path, args, root / f"r{r}")))
        for mode in ("off", "latent"):
            times[mode].append(statistics.median(time_ours(path, args, root / f"r{r}", mode)))
    trl = statistics.median(times["trl"])
    results = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
               "threads": torch.get_num_threads(), **vars(args), "trl_step_s": trl}  # fmt: skip
    for mode in ("off", "latent"):
        ours = statistics.median(times[mode])
        results[f"ours_{mode}_step_s"] = ours
        results[f"ours_{mode}_over_trl"] = ours / trl
    for key, value in results.items():
        print(f"{key:>22}: {value:.3f}" if isinstance(value, float) else f"{key:>22}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
