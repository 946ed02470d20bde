"""The codec reconstruction table: token and exact-chunk accuracy against compression n, per level and quantizer.

    python -m experiments.codec_table                          # every row below, 1 torch thread (~20 min)
    python -m experiments.codec_table --steps 200 --only env   # fewer steps, one text
    python -m experiments.codec_table --out runs/codec_table   # where the codecs and the table go

Each row is one codec trained here by `neuralese codec train` on held-in text and measured on
held-out text (its report.json): GSM8K (questions and worked solutions: train.jsonl to train,
test.jsonl to measure) and an environment's prompts and targets (4+4-digit addition by default:
train split to train, test split to measure). Level 1 codes n text tokens in one dense token
(n = 2, 4, 8); level 2 codes n2 level-1 dense tokens in one (n = n1 * n2 text tokens) through its
frozen level-1 base, the row of the same text and quantizer.

The code's size follows n so that every row spends the same code per text token: `--levels`
(FSQ levels per 2 text tokens, [8, 8, 8, 8, 8]: 32,768 codes, 7.5 bits per token,
the most that n = 8 can repeat within int64 code indices) is repeated
n / 2 times, and a continuous codec (`quantizer: none`: the same bounded code, not rounded) has as
many dimensions. So a row at n = 8 writes 16 dimensions for 8 tokens, and the table asks how
well n tokens fit in one position at a fixed budget per token. Every step reads the same number
of text tokens (`--batch-tokens`), so a row's compute does not grow with n. A finished row is read back.

Writes OUT/table.md and OUT/results.json; prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.stage0_table import NEURALESE, ROOT, run, set_flags

RECIPE = """\
seed: 0
env: {{name: {env}, args: {args}}}
codec: {{train_texts: 20000, eval_texts: 1000, embedding_size: 64, width: 512, blocks: 2, learning_rate: 2.0e-3,
        warmup_steps: 30}}
"""
LEVEL1 = [2, 4, 8]  # n
LEVEL2 = [(2, 2), (4, 2)]  # (n1, n2): n = n1 * n2 text tokens per level-2 dense token


def codec(
    out: Path,
    recipe: Path,
    text: str,
    quantizer: str,
    n: int,
    levels: list[int],
    steps: int,
    batch_tokens: int,
    base: Path | None = None,
    n_base: int = 1,
) -> dict:
    """Train (unless done) one codec; its report, keyed for the table."""
    level = 1 if base is None else 2
    name = f"{text}-{quantizer}-l{level}-n{n * n_base}" + (f"-over{n_base}" if base else "")
    folder = out / name
    times = max(1, n * n_base // 2)  # the code per 2 text tokens, repeated for n text tokens
    sets = {
        "codec.text": text,
        "codec.quantizer": quantizer,
        "codec.chunk_tokens": n,
        "codec.max_steps": steps,
        "codec.fsq_levels": levels * times,
        "codec.code_width": len(levels) * times,
        "codec.batch_size": max(8, batch_tokens // (n * n_base)),
    }
    if base is not None:
        sets["codec.base"] = base
    if not (folder / "report.json").is_file():
        run(
            [*NEURALESE, "codec", "train", str(recipe), "--out", str(folder), *set_flags(sets)],
            out / "log.txt",
        )
    r = json.loads((folder / "report.json").read_text())
    return {
        "text": text,
        "level": level,
        "n": n * n_base,
        "n1": n_base if base else n,
        "n2": n if base else None,
        "quantizer": quantizer,
        "code_dims": r["code_width"],
        "num_codes": r["num_codes"],
        "token_accuracy": r["held_out"]["token_accuracy"],
        "chunk_exact": r["held_out"]["chunk_exact"],
        "train_token_accuracy": r["train"]["token_accuracy"],
        "codes_used": r["held_out"].get("codes_used"),
        "held_out_chunks": r["held_out"]["chunks"],
        "steps": r["steps"],
        "train_wall_s": r["train_wall_s"],
        "folder": str(folder),
    }


def table(results: list[dict], env_label: str) -> str:
    """The markdown table, one row per codec."""
    lines = [
        "| text | level | n (n1 x n2) | quantizer | code | token accuracy | exact chunks | train token acc. | "
        "steps | wall s |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        text = "GSM8K test" if r["text"] == "gsm8k" else env_label
        n = f"{r['n']}" + (f" ({r['n1']} x {r['n2']})" if r["level"] == 2 else "")
        code = f"{r['code_dims']} dims" + (f", {r['num_codes']:.3g} codes" if r["num_codes"] else "")
        lines.append(
            f"| {text} | {r['level']} | {n} | {r['quantizer']} | {code} | {r['token_accuracy']:.4f} | "
            f"{r['chunk_exact']:.4f} | {r['train_token_accuracy']:.4f} | {r['steps']} | {r['train_wall_s']} |"
        )
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    """The command line of `main`."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.codec_table", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", default="runs/codec_table", help="codecs, log and the table")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps of every codec")
    p.add_argument(
        "--batch-tokens", type=int, default=512, help="text tokens per step (batch: this / n chunks)"
    )
    p.add_argument("--levels", default="8,8,8,8,8", help="FSQ levels per 2 text tokens")
    p.add_argument("--env", default="addition", help="the environment whose text is the second corpus")
    p.add_argument("--env-args", default="{digits: 4}", help="its factory arguments (YAML)")
    p.add_argument("--only", help="gsm8k or env (default: both)")
    p.add_argument("--quantizers", default="none,fsq")
    return p.parse_args()


def main() -> None:
    """Train (or read back) every codec of the table; write and print it."""
    args = parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    recipe = out / "codec.yaml"
    recipe.write_text(RECIPE.format(env=args.env, args=args.env_args))
    levels = [int(v) for v in args.levels.split(",")]
    env_label = f"{args.env} {args.env_args} test"
    results = []
    for text in [t for t in ("gsm8k", "env") if args.only in (None, t)]:
        for quantizer in args.quantizers.split(","):
            level1 = {}
            for n in LEVEL1:
                r = codec(out, recipe, text, quantizer, n, levels, args.steps, args.batch_tokens)
                level1[n] = Path(r["folder"])
                results.append(r)
                print(
                    f"codec_table: {text} {quantizer} level 1 n={n}: {r['token_accuracy']:.4f} "
                    f"({r['train_wall_s']} s)",
                    flush=True,
                )
            for n1, n2 in LEVEL2:
                r = codec(
                    out,
                    recipe,
                    text,
                    quantizer,
                    n2,
                    levels,
                    args.steps,
                    args.batch_tokens,
                    base=level1[n1],
                    n_base=n1,
                )
                results.append(r)
                print(
                    f"codec_table: {text} {quantizer} level 2 n={n1}x{n2}: {r['token_accuracy']:.4f} "
                    f"({r['train_wall_s']} s)",
                    flush=True,
                )
    text = table(results, env_label)
    header = (
        f"Held-out reconstruction of text codecs trained here ({args.steps} steps of {args.batch_tokens} text "
        f"tokens each, 1 CPU thread); "
        f"FSQ levels {levels} per 2 text tokens, a continuous code of as many dimensions.\n\n"
    )
    (out / "table.md").write_text(header + text)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(header + text)


if __name__ == "__main__":
    main()
