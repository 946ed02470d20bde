"""`neuralese inspect`: what each thought of one answer decodes to (logit lens), gate values, norms.

    neuralese inspect CHECKPOINT [--prompt TEXT] [--out FILE.png] [--top-k K] [--codec-map MAP]

Prints the table (neuralese.inspector.format_table); with --out, also draws it. With a codec map
(`neuralese codec fit-map`), each thought is also read as text through a codec. A folder that knows
its task (a run, a checkpoint, an exported folder: neuralese.load.task_of) gives the defaults: the
first problem of its test split as the prompt, and its evaluation's answer budget.
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
    from neuralese.load import load_source, locate, task_of

    if args.prompt is not None and not args.prompt.strip():  # nothing to attend to: zero positions
        raise UsageError(f"argument --prompt: expected a non-empty text, got {args.prompt!r}")
    if args.out:  # before the model loads: a bad picture path must not cost the inspection
        check_output_file(args.out, "inspect --out", PICTURE_SUFFIXES)
    codec_map = load_map(args.codec_map) if args.codec_map else None
    src = locate(args.checkpoint)
    task = task_of(src)
    prompt = args.prompt if args.prompt is not None else first_prompt(args.checkpoint, task)
    budget = args.max_new_tokens or (task.eval.max_new_tokens if task is not None else 16)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = load_source(src, device=device)
    ins = inspect_thoughts(policy, prompt, budget, args.temperature, args.top_k, args.seed, codec_map)
    print(format_table(ins))
    if args.out:
        print(f"picture: {plot(ins, args.out)}")


def first_prompt(folder: str, task) -> str | list:
    """The first problem of the task's split (the run's own seed): the prompt `inspect RUN` reads."""
    from neuralese.envs import load_split, make_env

    if task is None:
        raise UsageError(
            f"argument --prompt: {folder} records no task (a plain model folder); give --prompt TEXT"
        )
    env = make_env(task.env, task.env_args)
    return load_split(env, task.split, 1, task.seed, task.env)["prompt"][0]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`inspect`, on the CLI's subparsers."""
    p = sub.add_parser("inspect", help="what each thought decodes to (logit lens), gate values, norms")
    p.add_argument("checkpoint", help="an exported folder, a run folder or RUN/checkpoints/step-N")
    p.add_argument(
        "--prompt",
        help="the prompt to answer and inspect (default: the first problem of the run's test split)",
    )
    p.add_argument("--out", help="also draw the inspection to this PNG")
    number_flag(p, "--top-k", PositiveInt, 5, "logit-lens tokens shown per thought")
    number_flag(
        p,
        "--max-new-tokens",
        PositiveInt,
        None,
        "most answer tokens (default: the run's eval budget, else 16)",
    )
    number_flag(p, "--temperature", NonNegativeFloat, 0.0, "sampling temperature, 0 = greedy")
    config_flag(p, "--seed", RunConfig, "seed", "seeds the sampling")
    p.add_argument(
        "--codec-map", help="also read each thought as text through a codec (`neuralese codec fit-map`)"
    )
    p.set_defaults(fn=cmd_inspect)
