"""`neuralese eval`: greedy accuracy (and pass@k) of a checkpoint on an environment.

    neuralese eval CHECKPOINT --env NAME [--env-args YAML] [--split test] [--n N] [--samples K --temperature T]
                   [--thoughts shuffled]

Prints one JSON line with at least `accuracy`, `n` and `mean_generated_positions`. The numeric flags
take their ranges and defaults from the `eval` config fields they stand for.
"""

from __future__ import annotations

import argparse
import json

from neuralese.cli.flags import config_flag, env_args_of, env_flags
from neuralese.config import EvalConfig, RunConfig
from neuralese.errors import UsageError


def cmd_eval(args: argparse.Namespace) -> None:
    """Evaluate a checkpoint on an environment; one JSON line."""
    import torch

    from neuralese.envs import make_env
    from neuralese.evaluate import evaluate
    from neuralese.load import load_policy

    env_args = env_args_of(args.env_args)
    if args.samples == 0 and args.temperature != EvalConfig().temperature:
        raise UsageError(
            "argument --temperature: applies to sampled answers only; give --samples K with it (greedy "
            f"accuracy is temperature 0), got --temperature {args.temperature:g} alone"
        )
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # the environment first: a plug-in's mistake is reported before the model loads
    env = make_env(args.env, env_args, keys=("--env", "--env-args"))
    policy = load_policy(args.checkpoint, device=device)
    result = evaluate(
        policy,
        env,
        split=args.split,
        n=args.n,
        seed=args.seed,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        samples=args.samples,
        temperature=args.temperature,
        env_name=args.env,
        progress=not args.quiet,
        thoughts=args.thoughts,
    )
    print(json.dumps(result))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`eval`, on the CLI's subparsers."""
    p = sub.add_parser("eval", help="greedy accuracy (and pass@k) of a checkpoint on an environment")
    p.add_argument("checkpoint", help="a model folder (as-is, exported, or a run checkpoint)")
    env_flags(p, "built-in env name or plug-in 'file.py:make' / 'pkg.module:make'")
    p.add_argument("--split", default="test")
    config_flag(p, "--n", EvalConfig, "n", "problems to evaluate")
    config_flag(p, "--samples", EvalConfig, "samples", "also sample K answers per problem: pass@1, pass@K")
    config_flag(p, "--temperature", EvalConfig, "temperature", "sampling temperature for --samples")
    config_flag(p, "--max-new-tokens", EvalConfig, "max_new_tokens", "most answer tokens per problem")
    config_flag(p, "--batch-size", EvalConfig, "batch_size", "prompts per generation batch")
    config_flag(p, "--seed", RunConfig, "seed", "seeds the problems drawn and the sampling")
    p.add_argument(
        "--thoughts",
        choices=("own", "shuffled"),
        default="own",
        help="`shuffled`: each greedy answer reads another prompt's thoughts (does the policy use them?)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_eval)
