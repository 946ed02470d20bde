"""`neuralese eval`: greedy accuracy (and pass@k) of a checkpoint on an environment.

    neuralese eval RUN                       the run's env, test split, `eval` section and seed
    neuralese eval CHECKPOINT [--env NAME] [--env-args YAML] [--env-set KEY=VALUE ...] [--split test] [--n N]
                   [--samples K --temperature T] [--max-new-tokens M] [--thoughts shuffled] [--superposition]

Prints one JSON line with at least `accuracy`, `n` and `mean_generated_positions`. A run folder, a
checkpoint, an exported folder and an as-is model from `neuralese pretrain` know the task they were
trained on (neuralese.load.task_of): every flag then defaults to what the run used, so `eval RUN`
prints the run's own final evaluation; a flag overrides it (`--env-set plans=shuffled` one factory
argument of the run's). A plain model folder needs `--env`, and
its other flags default to the `eval` config fields they stand for (their ranges are those fields').
With `--samples K` it also prints `pass_at`, pass@1..K. `--superposition` adds, per thought, how much of
it sits on what that step can reach (neuralese.superposition), for environments whose rows say what
each step can reach (`reachable`, `reachable_weights`: MNNS with `values: true`, reach).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json

import yaml

from neuralese.cli.flags import config_flag, env_args_of
from neuralese.config import EvalConfig, RunConfig, describe_yaml_error
from neuralese.errors import UsageError

# The flags that stand for a field of the `eval` section.
EVAL_FLAGS = ("n", "samples", "temperature", "max_new_tokens", "batch_size")


def eval_task(args: argparse.Namespace, task):
    """The task to evaluate: the folder's (`task`, or None) with the command line's flags over it."""
    from neuralese.evaluate import Task

    if task is None and args.env is None:
        raise UsageError(
            f"argument --env: {args.checkpoint} records no task (a plain model folder); name the environment, "
            "e.g. --env addition --env-args '{digits: 4}'"
        )
    same_env = args.env is None or (task is not None and args.env == task.env)
    base = task if task is not None and same_env else None
    env_args = env_args_of(args.env_args) if args.env_args is not None else (base.env_args if base else {})
    env_args = with_env_sets(env_args, args.env_set or [])
    evaluation = base.eval if base else EvalConfig()
    evaluation = dataclasses.replace(
        evaluation, **{f: getattr(args, f) for f in EVAL_FLAGS if getattr(args, f) is not None}
    )
    if evaluation.samples == 0 and args.temperature is not None:
        raise UsageError(
            "argument --temperature: applies to sampled answers only; give --samples K with it (greedy "
            f"accuracy is temperature 0), got --temperature {args.temperature:g} alone"
        )
    split = args.split or (base.split if base else "test")
    seed = args.seed if args.seed is not None else (base.seed if base else RunConfig().seed)
    return Task(args.env or task.env, env_args, split, evaluation, seed)


def with_env_sets(env_args: dict, sets: list[str]) -> dict:
    """`env_args` with each `--env-set KEY=VALUE` over it (VALUE read as YAML; a dotted KEY reaches into a
    nested mapping, `args.digits=5`), in a copy."""
    out = copy.deepcopy(env_args)
    for item in sets:
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise UsageError(f"argument --env-set: expects KEY=VALUE such as plans=shuffled, got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise UsageError(
                f"argument --env-set {item!r}: the value is not YAML: {describe_yaml_error(e)}"
            ) from None
        where = out
        for i, part in enumerate(parts[:-1]):
            where = where.setdefault(part, {})
            if not isinstance(where, dict):
                raise UsageError(
                    f"argument --env-set {item!r}: env arg {'.'.join(parts[: i + 1])!r} is {where!r}, not a mapping"
                )
        where[parts[-1]] = value
    return out


def cmd_eval(args: argparse.Namespace) -> None:
    """Evaluate a checkpoint on an environment; one JSON line."""
    import torch

    from neuralese.envs import load_split, make_env
    from neuralese.evaluate import evaluate_task
    from neuralese.load import load_source, locate, model_folder, task_of
    from neuralese.models import load_tokenizer
    from neuralese.preflight import check_tokens

    src = locate(args.checkpoint)
    task = eval_task(args, task_of(src))
    torch.manual_seed(task.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # the environment and its problems first: a plug-in's mistake, or text the model cannot read, is
    # reported before the model loads
    env = make_env(task.env, task.env_args, keys=("--env", "--env-args"))
    rows = load_split(env, task.split, task.eval.n, task.seed, task.env)
    folder = model_folder(src)
    check_tokens(rows, load_tokenizer(folder), f"env {task.env!r}, {task.split} split", folder)
    missing = sorted({"reachable", "reachable_weights"} - set(rows.column_names))
    if args.superposition and missing:
        raise UsageError(
            f"argument --superposition: env {task.env!r} does not say what each step can reach (its rows have "
            f"no {missing} column); MNNS with values: true and reach do"
        )
    policy = load_source(src, device=device)
    result = evaluate_task(policy, env, task, progress=not args.quiet, thoughts=args.thoughts)
    if args.superposition:
        if not (policy.feedback_on and policy.mode.thought_positions):
            raise UsageError(f"argument --superposition: {args.checkpoint} has no thoughts to measure")
        from neuralese.superposition import measure

        result["superposition"] = measure(policy, rows, task.eval.max_new_tokens, task.eval.batch_size)
    print(json.dumps(result))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`eval`, on the CLI's subparsers."""
    p = sub.add_parser("eval", help="greedy accuracy (and pass@k) of a checkpoint on an environment")
    p.add_argument(
        "checkpoint", help="a run folder, RUN/checkpoints/step-N, or a model folder (as-is, exported)"
    )
    p.add_argument(
        "--env", help="built-in env name or plug-in 'file.py:make' / 'pkg.module:make' (default: the run's)"
    )
    p.add_argument("--env-args", help="factory arguments as YAML, e.g. '{digits: 4}' (default: the run's)")
    p.add_argument(
        "--env-set",
        action="append",
        metavar="KEY=VALUE",
        help="set one factory argument over the run's (or --env-args), e.g. plans=shuffled or args.digits=5",
    )
    p.add_argument("--split", help="the split to evaluate (default: the run's env.test_split, else test)")
    default = " (default: the run's, else {})"
    for flag, field, text in (
        ("--n", "n", "problems to evaluate"),
        ("--samples", "samples", "also sample K answers per problem: pass@1, pass@K"),
        ("--temperature", "temperature", "sampling temperature for --samples"),
        ("--max-new-tokens", "max_new_tokens", "most answer tokens per problem"),
        ("--batch-size", "batch_size", "prompts per generation batch"),
    ):
        config_flag(
            p, flag, EvalConfig, field, text + default.format(getattr(EvalConfig(), field)), from_run=True
        )
    config_flag(
        p,
        "--seed",
        RunConfig,
        "seed",
        "seeds the problems drawn and the sampling (default: the run's)",
        from_run=True,
    )
    p.add_argument(
        "--thoughts",
        choices=("own", "shuffled"),
        default="own",
        help="`shuffled`: each greedy answer reads another prompt's thoughts (does the policy use them?)",
    )
    p.add_argument(
        "--superposition",
        action="store_true",
        help="also measure, per thought, the weight it puts on what that step can reach (neuralese.superposition)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_eval)
