"""The cross-model table: B answering from model A's translated thoughts, against B alone, A alone, B
given A's answer as text and B given shuffled translated thoughts; before and after RL on the translator.

    OMP_NUM_THREADS=1 python -m experiments.cross_table                 # writes runs/cross_table/
    OMP_NUM_THREADS=1 python -m experiments.cross_table --seeds 1 --rl-steps 20 --out DIR   # a quick look

Two tiny Llamas are trained by stage 0 on 3-digit addition (experiments/translate_table.py's shapes and
tokenizers): A (width 64, one digit a token) and B (width 96, digits in pairs, a harder target that B
learns worse in the same steps; B's stage 0 also inserts 0-4 thought tokens after the prompt, so thought
positions are not new to it). `translate fit` fits the linear translator A -> B on their final states.
Then recipes/cross.yaml: A thinks 4 latent thoughts, B's thought positions read their translations, and
GRPO trains the translator on B's reward (A and B frozen), once per seed.

Rows, greedy accuracy on the test split:
    A alone, B alone              each model answering by itself, no thoughts
    B reads A's answer as text    B's thought positions hold B's own token embeddings of A's greedy
                                  answer (the text A would send), then B answers
    B from A's thoughts           the translated thoughts (fitted translator: before RL; trained: after)
    B from shuffled thoughts      the translations of the next prompt's thoughts: the control for
                                  whether B uses what they carry

Writes OUT/results.json and OUT/table.md (with wall times) and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from experiments.translate_table import ENV, untrained
from neuralese.build import build_policy
from neuralese.config import ModelConfig, PretrainConfig, RunConfig, TranslateConfig, load_config
from neuralese.envs import load_split, make_env
from neuralese.evaluate import correct, evaluate
from neuralese.policy import NeuralesePolicy
from neuralese.pretrain import pretrain
from neuralese.trainer import Trainer
from neuralese.translate.fit import fit_translators

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "cross.yaml"


def stage0(out: Path, name: str, steps: int, thought_tokens: int, seed: int) -> tuple[Path, float]:
    """Model `name` (A or B) trained by stage 0 from its untrained folder; and the wall time."""
    start = time.perf_counter()
    untrained(out, name, seed)
    folder = out / f"model-{name}"
    pretrain(
        RunConfig(
            seed=seed,
            output_dir=str(out),
            env=ENV,
            model=ModelConfig(path=str(out / f"untrained-{name}")),
            pretrain=PretrainConfig(
                output_dir=str(folder),
                max_steps=steps,
                batch_size=64,
                learning_rate=2e-3,
                warmup_steps=20,
                thought_tokens_max=thought_tokens,
            ),
        ),
        overwrite=True,  # each table trains its models afresh
    )
    return folder, time.perf_counter() - start


@torch.no_grad()
def text_accuracy(policy, thinker: NeuralesePolicy, rows, max_new_tokens: int, batch: int = 100) -> float:
    """B's greedy accuracy when its thought positions hold its own embeddings of A's greedy answer's tokens
    (cut to K, thought-token embeddings after them): A's answer sent as text through the same positions."""
    K, prompts, texts = policy.mode.thought_positions, list(rows["prompt"]), []
    answers = thinker.generate(prompts, max_new_tokens=max_new_tokens)
    theta = policy.embed(torch.tensor([policy.thought_token_id]))[0]
    for start in range(0, len(prompts), batch):
        ids, mask = policy.encode(prompts[start : start + batch])
        sent = torch.stack([theta] * K).repeat(ids.shape[0], 1, 1)  # [B, K, D_B]
        for i, answer in enumerate(answers[start : start + batch]):
            tokens = policy.tokenizer(answer, add_special_tokens=False)["input_ids"][:K]
            if tokens:
                sent[i, : len(tokens)] = policy.embed(torch.tensor(tokens))
        ro = policy.rollout(ids, mask, max_new_tokens, 0.0, thoughts=sent)
        texts += policy.decode(ro)
    return round(correct(make_env(ENV.name, ENV.args), rows, texts).float().mean().item(), 4)


def accuracies(policy, cfg: RunConfig) -> dict:
    """B's greedy accuracy from its thoughts and from shuffled ones."""
    env, e = make_env(cfg.env.name, cfg.env.args), cfg.eval
    own, shuffled = (
        evaluate(
            policy, env, cfg.env.test_split, e.n, cfg.seed, 100, e.max_new_tokens, progress=False, thoughts=t
        )["accuracy"]
        for t in ("own", "shuffled")
    )
    return {"own": own, "shuffled": shuffled}


def plain_accuracy(folder: Path, cfg: RunConfig) -> float:
    """Greedy accuracy of a model folder answering alone, without thoughts."""
    env, e = make_env(cfg.env.name, cfg.env.args), cfg.eval
    policy = NeuralesePolicy.from_pretrained(folder).eval()
    return evaluate(policy, env, cfg.env.test_split, e.n, cfg.seed, 100, e.max_new_tokens, progress=False)[
        "accuracy"
    ]


def rl_runs(cfg: RunConfig, out: Path, seeds: int) -> list[dict]:
    """The recipe's RL once per seed (same prompts and test problems: data_seed fixed), each evaluated.

    data_seed 1 draws other train problems than stage 0's (seed 0): B has learnt its stage-0 problems by
    heart (B's greedy accuracy on them is near 1, on test problems 0.27), so on those RL would reward B
    for answering alone and never for reading A."""
    runs = []
    for seed in range(seeds):
        run_cfg = dataclasses.replace(cfg, seed=seed, data_seed=1, output_dir=str(out / f"rl-seed{seed}"))
        start = time.perf_counter()
        trainer = Trainer(run_cfg)
        trainer.train()
        wall = time.perf_counter() - start
        trainer.policy.eval()
        runs.append(
            {
                "seed": seed,
                "wall_s": round(wall, 1),
                **accuracies(trainer.policy, dataclasses.replace(cfg, seed=0)),
            }
        )
    return runs


def mean_sd(values: list[float]) -> str:
    """Mean ± sample std of per-seed numbers (the number alone for one seed)."""
    t = torch.tensor(values)
    return f"{t.mean():.3f} ± {t.std():.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def table(res: dict) -> str:
    """The markdown table of every row (module docstring)."""
    runs = res["rl"]
    seeds = ", ".join(f"{r['own']:.3f}" for r in runs)
    shuffled = ", ".join(f"{r['shuffled']:.3f}" for r in runs)
    lines = [
        "| B answers ... | accuracy | per seed |",
        "|---|---|---|",
        f"| alone (B by itself, no thoughts) | {res['b_alone']:.3f} | |",
        f"| (A alone, by itself) | {res['a_alone']:.3f} | |",
        f"| reading A's answer as text in its thought positions | {res['text']:.3f} | |",
        f"| from A's translated thoughts, before RL (fitted translator) | {res['before']['own']:.3f} | |",
        f"| from shuffled translated thoughts, before RL | {res['before']['shuffled']:.3f} | |",
        f"| from A's translated thoughts, after RL on the translator | {mean_sd([r['own'] for r in runs])} | {seeds} |",
        f"| from shuffled translated thoughts, after RL | {mean_sd([r['shuffled'] for r in runs])} | {shuffled} |",
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    """The command line of `main`."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.cross_table", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", default="runs/cross_table")
    p.add_argument("--steps-a", type=int, default=800, help="stage-0 steps of A")
    p.add_argument("--steps-b", type=int, default=2000, help="stage-0 steps of B")
    p.add_argument("--rl-steps", type=int, default=None, help="RL steps per seed (default: the recipe's)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--input",
        choices=["latent_only", "gated_sum"],
        default=None,
        help="B's neuralese.input (default: the recipe's)",
    )
    p.add_argument(
        "--reuse", action="store_true", help="take A, B and the translator from OUT (a run before)"
    )
    return p.parse_args()


def main() -> None:
    """Stage 0 of A and B, the translator, the rows before RL, RL per seed; write and print the table."""
    args = parse_args()
    torch.set_num_threads(1)
    out, start, wall = Path(args.out), time.perf_counter(), {}
    cfg = load_config(RECIPE)
    K = cfg.neuralese.num_thoughts
    a, b = out / "model-A", out / "model-B"
    if not args.reuse:
        a, wall["stage0_A_s"] = stage0(out, "A", args.steps_a, 0, 0)
        b, wall["stage0_B_s"] = stage0(out, "B", args.steps_b, K, 0)
        t0 = time.perf_counter()
        fit_translators(
            RunConfig(
                env=ENV,
                translate=TranslateConfig(
                    models=[str(a), str(b)], kinds=["linear"], output_dir=str(out / "translate")
                ),
            )
        )
        wall["fit_s"] = time.perf_counter() - t0
    if args.input is not None:
        cfg.neuralese.input = args.input
    cfg.model.path, cfg.cross.thinker = str(b), str(a)
    cfg.cross.translator = str(out / "translate" / "linear" / "model-A-to-model-B")
    if args.rl_steps is not None:
        cfg.rl.steps = cfg.log.save_every = args.rl_steps
    rows = load_split(
        make_env(cfg.env.name, cfg.env.args), cfg.env.test_split, cfg.eval.n, cfg.seed, cfg.env.name
    )
    policy = build_policy(cfg, "cpu").eval()
    t0 = time.perf_counter()
    res = {
        "a_alone": plain_accuracy(a, cfg),
        "b_alone": plain_accuracy(b, cfg),
        "before": accuracies(policy, cfg),
        "text": text_accuracy(policy, policy.thinker, rows, cfg.eval.max_new_tokens),
    }
    wall["eval_before_s"] = time.perf_counter() - t0
    res["rl"] = rl_runs(cfg, out / cfg.neuralese.input, args.seeds)
    wall["total_s"] = time.perf_counter() - start
    res["wall_s"] = {k: round(v, 1) for k, v in wall.items()}
    md = table(res)
    rl_walls = ", ".join(f"{r['wall_s']} s" for r in res["rl"])
    header = (
        f"B's input {cfg.neuralese.input}. Stage 0: A {args.steps_a} steps, B {args.steps_b} steps; {K} thoughts; RL: {cfg.rl.steps} GRPO steps "
        f"of {cfg.rl.prompts_per_step}x{cfg.rl.samples_per_prompt} samples per seed ({rl_walls}); "
        f"{cfg.eval.n} test problems, greedy."
    )
    name = f"-{cfg.neuralese.input}" if args.reuse or args.input else ""
    (out / f"table{name}.md").write_text(f"{header}\n\n{md}\n\nWall times: {res['wall_s']}.\n")
    (out / f"results{name}.json").write_text(json.dumps({"args": vars(args), **res}, indent=1))
    print(header, md, f"wall times: {res['wall_s']}", sep="\n\n")


if __name__ == "__main__":
    main()
