"""The translation table: how well one tiny model's thoughts translate into another's input space.

    OMP_NUM_THREADS=1 python -m experiments.translate_table                     # writes runs/translate_table/
    OMP_NUM_THREADS=1 python -m experiments.translate_table --steps 300 --out DIR   # less-trained models

Two tiny Llamas are trained here by stage 0 (`neuralese.pretrain`, feedback off) on the same addition
text, differing in width, depth and tokenizer: A (width 64, 2 layers) reads one digit per token,
B (width 96, 3 layers) reads digits in pairs (neuralese.tiny.DIGIT_PAIR_PATTERN), so only the positions
where both end a token at the same character pair up. Then `translate fit` (neuralese.translate.fit) fits
linear, MLP and common-space translators on their fed-back states for each layer in `--layers`,
and measures them on held-out problems in both directions. The same fit on the two models before
training (same shapes and tokenizers, random weights) is the control: it says how much of the
fidelity comes from what the models learned rather than from the architecture.

Writes OUT/results.json and OUT/table.md (with wall times) and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from neuralese.config import (
    EnvConfig,
    ModelConfig,
    PretrainConfig,
    RunConfig,
    TinyModelConfig,
    TranslateConfig,
)
from neuralese.envs import env_texts, load_split, make_env
from neuralese.pretrain import pretrain
from neuralese.tiny import DIGIT_PAIR_PATTERN, PIECE_PATTERN, save_untrained
from neuralese.translate.fit import fit_translators

ENV = EnvConfig(name="addition", args={"digits": 3}, train_size=5000, test_size=300)
SHAPES = {
    "A": TinyModelConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256, max_positions=32),
    "B": TinyModelConfig(hidden_size=96, num_layers=3, num_heads=4, intermediate_size=256, max_positions=32),
}


def untrained(out: Path, name: str, seed: int) -> Path:
    """Model `name` before training, saved: A with the default tokenizer, B with digit pairs."""
    env = make_env(ENV.name, ENV.args)
    texts = env_texts(load_split(env, "train", ENV.train_size, seed)) + env_texts(
        load_split(env, "test", ENV.test_size, seed)
    )
    if name == "B":  # every pair, so no held-out problem meets <unk>
        texts += [f"{i:02d}" for i in range(100)]
    pattern = PIECE_PATTERN if name == "A" else DIGIT_PAIR_PATTERN
    return save_untrained(texts, SHAPES[name], out / f"untrained-{name}", seed=seed, pattern=pattern)


def train(out: Path, name: str, steps: int, seed: int) -> tuple[Path, dict]:
    """Stage 0 from the untrained folder (`neuralese.pretrain` fine-tunes a model folder)."""
    folder = out / f"model-{name}"
    start = time.perf_counter()
    cfg = RunConfig(
        seed=seed,
        output_dir=str(out),
        env=ENV,
        model=ModelConfig(path=str(out / f"untrained-{name}")),
        pretrain=PretrainConfig(
            output_dir=str(folder), max_steps=steps, batch_size=64, learning_rate=2e-3, warmup_steps=20
        ),
    )
    pretrain(cfg, overwrite=True)  # each table trains its models afresh
    log = json.loads((folder / "pretrain_log.json").read_text())["log_history"]
    losses = [e["loss"] for e in log if "loss" in e]
    return folder, {
        "steps": steps,
        "final_loss": round(losses[-1], 4),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def fit(models: list[Path], out: Path, layer: int, args) -> dict:
    """`translate fit` of every kind between `models` on fed-back layer `layer`; its report and wall time."""
    cfg = RunConfig(
        seed=args.seed,
        env=ENV,
        translate=TranslateConfig(
            models=[str(m) for m in models],
            fit_texts=args.fit_texts,
            held_out_texts=args.held_out_texts,
            mlp_steps=args.mlp_steps,
            common_width=args.common_width,
            output_dir=str(out),
        ),
    )
    cfg.neuralese = dataclasses.replace(cfg.neuralese, layer=layer)
    start = time.perf_counter()
    _, report = fit_translators(cfg)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    return report


def cells(row: dict) -> str:
    """One direction's fidelity numbers as table cells."""
    keys = ("cosine", "centered_cosine", "top1_agreement", "answer_top1_agreement")
    return " | ".join(f"{row[k]:.3f}" for k in keys)


def table(runs: list[dict]) -> str:
    """The markdown table: per layer and trained/untrained models, each kind in both directions."""
    lines = [
        "| models | layer | kind | A->B cosine | A->B centred cos | A->B top-1 | A->B answer top-1 "
        "| B->A cosine | B->A centred cos | B->A top-1 | B->A answer top-1 | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rep = run["report"]
        by = {(r["kind"], r["source"]): r for r in rep["results"]}
        for kind in ("mean", "linear", "mlp", "common"):
            ab, ba = (
                by[kind, "model-A" if run["trained"] else "untrained-A"],
                by[kind, "model-B" if run["trained"] else "untrained-B"],
            )
            secs = rep["fit_s"].get(kind, 0.0)
            lines.append(
                f"| {'trained' if run['trained'] else 'untrained'} | {rep['layer']} | {kind} | "
                f"{cells(ab)} | {cells(ba)} | {secs:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Stage 0 of A and B, then fits on trained and untrained models per layer; write and print the table."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.translate_table", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", default="runs/translate_table")
    p.add_argument("--steps", type=int, default=800, help="stage-0 steps per model")
    p.add_argument("--layers", default="-1,-2", help="fed-back layers to translate")
    p.add_argument("--fit-texts", type=int, default=2000)
    p.add_argument("--held-out-texts", type=int, default=300)
    p.add_argument("--mlp-steps", type=int, default=500)
    p.add_argument("--common-width", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    start = time.perf_counter()
    trained, stage0 = [], {}
    for name in ("A", "B"):
        untrained(out, name, args.seed)
        folder, stage0[name] = train(out, name, args.steps, args.seed)
        trained.append(folder)
    runs = []
    for layer in (int(x) for x in args.layers.split(",")):
        for is_trained, models in ((True, trained), (False, [out / "untrained-A", out / "untrained-B"])):
            tag = f"{'trained' if is_trained else 'untrained'}-layer{layer}"
            runs.append({"trained": is_trained, "report": fit(models, out / "fits" / tag, layer, args)})
    md = table(runs)
    rep = runs[0]["report"]
    header = (
        f"A: width {SHAPES['A'].hidden_size}, {SHAPES['A'].num_layers} layers, one digit per token "
        f"(vocab {rep['models'][0]['vocab']}); B: width {SHAPES['B'].hidden_size}, {SHAPES['B'].num_layers} "
        f"layers, digit pairs (vocab {rep['models'][1]['vocab']}). Stage 0: {args.steps} steps each "
        f"(final loss A {stage0['A']['final_loss']}, B {stage0['B']['final_loss']}; "
        f"{stage0['A']['wall_s']} s, {stage0['B']['wall_s']} s). Paired positions: "
        f"{rep['positions']['fit']} fit ({args.fit_texts} texts), {rep['positions']['held_out']} held out "
        f"({args.held_out_texts} texts; {rep['positions']['held_out_answer']} of them answer positions); "
        f"tokens read in held-out texts: {rep['tokens']['held_out']}."
    )
    total = round(time.perf_counter() - start, 1)
    (out / "table.md").write_text(f"{header}\n\n{md}\n\nTotal wall time {total} s.\n")
    (out / "results.json").write_text(
        json.dumps({"args": vars(args), "stage0": stage0, "runs": runs, "total_wall_s": total}, indent=1)
    )
    print(header, md, f"total wall time {total} s", sep="\n\n")


if __name__ == "__main__":
    main()
