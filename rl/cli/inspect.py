"""`neuralese inspect`: what each thought of one answer decodes to (logit lens), gate values, norms.

    neuralese inspect CHECKPOINT --prompt TEXT [--out FILE.png] [--top-k K] [--codec-map MAP]

Prints the table (neuralese.inspector.format_table); with --out, also draws it. With a codec map
(`neuralese codec fit-map`), each thought is also read as text through a codec.
"""

from __future__ import annotations

import argparse

from neuralese.cli.flags import config_flag, number_flag
from neuralese.config import RunConfig
from neuralese.errors import UsageError
from neuralese.ranges import NonNegativeFloat, PositiveInt


def cmd_inspect(args: argparse.Namespace) -> None:
    """Answer one prompt and print (and draw) what each thought carries."""
    import torch

    from neuralese.codec.lens import load_map
    from neuralese.inspector import PICTURE_SUFFIXES, format_table, inspect_thoughts, plot
    from neuralese.io import check_output_file
    from neuralese.load import load_policy

    if not args.prompt.strip():  # nothing to attend to: the model would run on zero positions
        raise UsageError(f"argument --prompt: expected a non-empty text, got {args.prompt!r}")
    if args.out:  # before the model loads: a bad picture path must not cost the inspection
        check_output_file(args.out, "inspect --out", PICTURE_SUFFIXES)
    codec_map = load_map(args.codec_map) if args.codec_map else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = load_policy(args.checkpoint, device=device)
    ins = inspect_thoughts(
        policy, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed, codec_map
    )
    print(format_table(ins))
    if args.out:
        print(f"picture: {plot(ins, args.out)}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`inspect`, on the CLI's subparsers."""
    p = sub.add_parser("inspect", help="what each thought decodes to (logit lens), gate values, norms")
    p.add_argument("checkpoint", help="an exported folder, a run folder or RUN/checkpoints/step-N")
    p.add_argument("--prompt", required=True, help="the prompt to answer and inspect")
    p.add_argument("--out", help="also draw the inspection to this PNG")
    number_flag(p, "--top-k", PositiveInt, 5, "logit-lens tokens shown per thought")
    number_flag(p, "--max-new-tokens", PositiveInt, 16, "most answer tokens")
    number_flag(p, "--temperature", NonNegativeFloat, 0.0, "sampling temperature, 0 = greedy")
    config_flag(p, "--seed", RunConfig, "seed", "seeds the sampling")
    p.add_argument(
        "--codec-map", help="also read each thought as text through a codec (`neuralese codec fit-map`)"
    )
    p.set_defaults(fn=cmd_inspect)
