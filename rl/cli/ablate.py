"""`neuralese ablate`: does neuralese RL beat token RL on a task, and does it use its thoughts?

    neuralese ablate RECIPE.yaml --seeds 3 [--steps N] [--out DIR] [--arms a,b ...] [--spec ARMS.yaml]
                     [--stage0 VARIANT=PATH ...] [--set key=value ...] [--threads 1]
    neuralese ablate RECIPE.yaml --spec ARMS.yaml --check        every arm's recipe resolved, then stop
    neuralese ablate RECIPE.yaml --spec ARMS.yaml --switch-on    every arm scored before any RL step
    neuralese ablate RECIPE.yaml --out DIR --diagnose [--samples K]   every finished run scored again
    neuralese compare OUT [OUT ...] [--labels L ...] [--out FILE.md]   finished ablations side by side

Trains every arm x seed in its own process and writes OUT/table.md, OUT/accuracy.png and
OUT/results.json (neuralese.ablate; docs/ablation.md). OUT defaults to the recipe's output_dir +
'/ablate'. `--diagnose` adds OUT/diagnostics.jsonl: each finished run at switch-on and after RL, with
shuffled thoughts, superposition and pass@1..K (neuralese.ablate.rescore).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralese.cli.flags import field_type, number_flag, recipe_command
from neuralese.config import RLConfig
from neuralese.errors import UsageError
from neuralese.ranges import NonNegativeInt, PositiveInt


def cmd_ablate(args: argparse.Namespace) -> None:
    """Check the plan, score every arm at switch-on, or run the whole ablation."""
    from neuralese.ablate.arms import check, make_plan

    plan = make_plan(
        args.recipe,
        args.spec,
        args.arms,
        args.set or [],
        steps=args.steps,
        seeds=args.seeds,
        threads=args.threads,
        models=args.stage0 or [],
    )
    check(plan)  # every arm against what its mode can do, before any stage 0 or run starts
    if args.check:
        return
    out = Path(args.out or Path(plan.config().output_dir) / "ablate")
    if args.switch_on:
        from neuralese.ablate.stage0 import switch_on_table

        out.mkdir(parents=True, exist_ok=True)
        print(switch_on_table(plan, out))
        return
    if args.diagnose:
        from neuralese.ablate.rescore import rescore

        if not (out / "runs").is_dir():
            raise UsageError(
                f"--diagnose: {out} holds no runs (OUT/runs); run the ablation first, or give --out"
            )
        print(f"ablate: {rescore(out, args.samples)} run(s) scored into {out / 'diagnostics.jsonl'}")
        return
    from neuralese.ablate.run import ablate

    ablate(plan, out)


def cmd_compare(args: argparse.Namespace) -> None:
    """Print (or write) finished ablations side by side."""
    from neuralese.ablate.compare import compare

    text = compare(args.folders, args.labels)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"compare: wrote {args.out}")
    else:
        print(text)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`ablate` and `compare`, on the CLI's subparsers."""
    p = recipe_command(
        sub,
        "ablate",
        cmd_ablate,
        "token RL against neuralese arms, several seeds, with the controls that say whether thoughts are used",
        "ablation folder (default: the recipe's output_dir + '/ablate')",
        recipe="YAML recipe (recipes/ablate_*.yaml)",
    )
    number_flag(p, "--seeds", PositiveInt, 3, "RL seeds per arm")
    number_flag(
        p, "--steps", field_type(RLConfig, "steps"), None, "RL steps per run (default: the recipe's rl.steps)"
    )
    p.add_argument("--spec", help="YAML file of stage-0 variants and arms (default: the built-in arms)")
    p.add_argument("--arms", help="comma-separated arms to run (default: every arm of the spec)")
    p.add_argument(
        "--stage0",
        action="append",
        metavar="VARIANT=PATH",
        help="the model folder of a stage-0 variant (repeatable): reused if it holds a model trained under "
        "the same stage-0 settings, else trained there (default: OUT/as-is-VARIANT; `default`: model.path)",
    )
    number_flag(p, "--threads", PositiveInt, 1, "torch threads in every process")
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--check", action="store_true", help="only check that every arm's recipe resolves, then stop"
    )
    what.add_argument(
        "--switch-on",
        action="store_true",
        help="only score every arm before any RL step, with its own and shuffled thoughts "
        "(OUT/switch_on.md); trains nothing but the stage-0 models",
    )
    what.add_argument(
        "--diagnose",
        action="store_true",
        help="only score every finished run again, at switch-on and after RL: shuffled thoughts, "
        "superposition, pass@1..K (OUT/diagnostics.jsonl)",
    )
    number_flag(
        p, "--samples", NonNegativeInt, 10, "answers a problem for pass@1..K with --diagnose (0: none)"
    )
    p.set_defaults(fn=cmd_ablate)
    c = sub.add_parser(
        "compare",
        help="finished ablations side by side: accuracy with controls, window full against 0, "
        "superposition, pass@k",
    )
    c.add_argument("folders", nargs="+", help="`neuralese ablate` output folders (OUT)")
    c.add_argument("--labels", nargs="+", help="a name per folder (default: the folder)")
    c.add_argument("--out", help="write the markdown to this file instead of printing it")
    c.set_defaults(fn=cmd_compare)
