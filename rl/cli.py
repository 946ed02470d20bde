"""The `neuralese` command line.

    neuralese pretrain RECIPE.yaml [--set key.sub=value ...] [--out DIR]
    neuralese train RECIPE.yaml [--set key.sub=value ...] [--out DIR] [--resume]
    neuralese eval CHECKPOINT --env NAME [--env-args YAML] [--split test] [--n N] [--samples K --temperature T] [--thoughts shuffled]
    neuralese export RUN_DIR_OR_CHECKPOINT OUT [--overwrite]
    neuralese inspect CHECKPOINT --prompt TEXT [--out FILE.png] [--top-k K] [--codec-map MAP]
    neuralese reward-model train RECIPE.yaml [--set key.sub=value ...] [--out DIR]
    neuralese codec train RECIPE.yaml [--set ...] [--out DIR]    (and codec encode, decode, fit-map: neuralese.codec.commands)
    neuralese translate fit RECIPE.yaml [--set key.sub=value ...] [--out DIR]
    neuralese config [RECIPE.yaml]     every config field with its type, default and docstring

User errors (a bad recipe, a missing folder, a broken plug-in, a bad command line or flag
value) print one paragraph and exit with status 2, with nothing written; anything else is a
bug and keeps its traceback. Every numeric flag has a declared range (neuralese.ranges); the eval
flags take theirs, and their defaults, from the `eval` config fields they stand for.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import typing
from collections.abc import Callable

import yaml

from neuralese.errors import ConfigError, NeuraleseError, UsageError
from neuralese.ranges import NonNegativeFloat, PositiveInt, flag_type


def _quiet_libraries() -> None:
    """Library chatter off (through the environment, so nothing heavy is imported yet)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' and datasets' bars too
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (main() called from Python): tell it directly
        sys.modules["transformers"].utils.logging.set_verbosity_error()
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def _load(args) -> object:
    from neuralese.config import load_config

    cfg = load_config(args.recipe, args.set or [])
    return cfg


def cmd_pretrain(args) -> None:
    cfg = _load(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.pretrain import pretrain

    if args.out:
        cfg.pretrain.output_dir = args.out
    out = pretrain(cfg)
    print(json.dumps({"stage": "pretrain", "model": str(out)}))


def cmd_train(args) -> None:
    cfg = _load(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.build import check_run
    from neuralese.trainer import Trainer

    check_run(cfg, args.recipe)  # what the recipe's thought mode and policy kind can do
    if args.out:
        cfg.output_dir = args.out
    result = Trainer(cfg, resume=args.resume).train()
    print(json.dumps({"stage": "train", "output_dir": cfg.output_dir, **result}))


def cmd_reward_model_train(args) -> None:
    cfg = _load(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.io import read_json
    from neuralese.rewardmodels.train import train_reward_model

    if args.out:
        cfg.reward_model.output_dir = args.out
    out = train_reward_model(cfg)
    keys = (
        "gear",
        "train_pairs",
        "pairs_right_order",
        "pairwise_accuracy",
        "samples_auc",
        "agreement_with_previous",
    )
    gears = [
        {k: g[k] for k in keys if k in g} for g in read_json(out / "report.json", "report.json")["gears"]
    ]
    print(json.dumps({"stage": "reward-model", "output_dir": str(out), "gears": gears}))


def env_args_of(text: str | None) -> dict:
    """The mapping an `--env-args` flag gives in YAML (`{digits: 4}`); none: {}."""
    from neuralese.config import describe_yaml_error

    try:
        env_args = yaml.safe_load(text) if text else {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--env-args {text!r} is not valid YAML: {describe_yaml_error(e)}") from None
    if not isinstance(env_args, dict):
        raise ConfigError(f"--env-args must be a mapping such as '{{digits: 4}}', got {text!r}")
    return env_args


def cmd_translate_fit(args) -> None:
    cfg = _load(args)  # before the heavy imports, so a recipe mistake is reported in a moment
    from neuralese.translate.fit import fit_translators

    if args.out:
        cfg.translate.output_dir = args.out
    out, report = fit_translators(cfg)
    print(json.dumps({"stage": "translate", "output_dir": str(out), "positions": report["positions"],
                      "fit_s": report["fit_s"], "results": report["results"]}))  # fmt: skip


def cmd_eval(args) -> None:
    import torch

    from neuralese import features  # noqa: F401  (a run folder may need any registered feature)
    from neuralese.config import EvalConfig
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


def cmd_export(args) -> None:
    from neuralese import features  # noqa: F401  (a run folder may need any registered feature)
    from neuralese.export import export
    from neuralese.load import locate

    src = locate(args.source)
    out = export(args.source, args.out, overwrite=args.overwrite)
    origin = str(src.checkpoint or src.path)
    print(json.dumps({"stage": "export", "out": str(out), "source": origin, "step": src.step}))


def cmd_inspect(args) -> None:
    import torch

    from neuralese import features  # noqa: F401  (a run folder may need any registered feature)
    from neuralese.inspector import PICTURE_SUFFIXES, format_table, inspect_thoughts, plot
    from neuralese.io import check_output_file
    from neuralese.load import load_policy

    if not args.prompt.strip():  # nothing to attend to: the model would run on zero positions
        raise UsageError(f"argument --prompt: expected a non-empty text, got {args.prompt!r}")
    if args.out:  # before the model loads: a bad picture path must not cost the inspection
        check_output_file(args.out, "inspect --out", PICTURE_SUFFIXES)
    codec_map = None
    if args.codec_map:
        from neuralese.codec.lens import load_map

        codec_map = load_map(args.codec_map)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = load_policy(args.checkpoint, device=device)
    ins = inspect_thoughts(policy, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed,
                           codec_map)  # fmt: skip
    print(format_table(ins))
    if args.out:
        print(f"picture: {plot(ins, args.out)}")


def cmd_config(args) -> None:
    from neuralese.config import describe_fields, to_dict

    if args.recipe:
        print(yaml.safe_dump(to_dict(_load(args)), sort_keys=False), end="")
        return
    if args.set:
        raise UsageError(f"--set {args.set[0]!r} needs a RECIPE.yaml to override (see `neuralese config --help`)")
    for key, tp, default, doc in describe_fields():
        shown = "" if default is None and tp[0].isupper() else f" = {default!r}"
        print(f"{key}: {tp}{shown}\n    {doc}")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a UsageError: one message, like every user error
    (argparse's own way prints the usage block and exits from inside the parser)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)", self.prog)


def number_flag(p: argparse.ArgumentParser, flag: str, tp, default, help: str) -> None:
    """A numeric flag whose type declares its range as a config field does (neuralese.ranges)."""
    kind = flag_type(tp)
    p.add_argument(
        flag,
        type=kind,
        default=default,
        help=f"{help} ({kind.base.__name__} {kind.range}; default {default})",
    )


def config_flag(p: argparse.ArgumentParser, flag: str, section: type, name: str, help: str) -> None:
    """A flag that sets what a config field does: the field's range and default are the flag's."""
    tp = typing.get_type_hints(section, include_extras=True)[name]
    number_flag(p, flag, tp, getattr(section(), name), help)


def build_parser() -> argparse.ArgumentParser:
    from neuralese.config import EvalConfig, RunConfig

    parser = Parser(prog="neuralese", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def recipe_command(name: str, fn: Callable, help: str, out: str, parent=sub) -> argparse.ArgumentParser:
        """A verb that reads a recipe: RECIPE.yaml, --set overrides and --out (what `out` says)."""
        p = parent.add_parser(name, help=help)
        p.add_argument("recipe", help="YAML recipe (see recipes/)")
        p.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="override a recipe field, e.g. rl.steps=10"
        )
        p.add_argument("--out", help=out)
        p.set_defaults(fn=fn)
        return p

    recipe_command("pretrain", cmd_pretrain, "stage 0: train the LM as-is (feedback off) with TRL's SFTTrainer",
                   "folder for the as-is model (default: pretrain.output_dir or model.path)")  # fmt: skip
    p = recipe_command("train", cmd_train, "stage 1: RL with continuous-thought feedback",
                       "run folder (default: the recipe's output_dir)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")

    rm = sub.add_parser("reward-model", help="reward models: train one (and the gears after it) here")
    recipe_command("train", cmd_reward_model_train,
                   "preference pairs from the policy's samples or a file; TRL's RewardTrainer",
                   "folder for the gears (default: reward_model.output_dir)",
                   rm.add_subparsers(dest="action", required=True))  # fmt: skip

    tr = sub.add_parser("translate", help="translators between models' thoughts: fit them, measure them")
    recipe_command("fit", cmd_translate_fit,
                   "linear, MLP and common-space translators on paired states; fidelity on held-out text",
                   "folder for the translators and report.json (default: translate.output_dir)",
                   tr.add_subparsers(dest="action", required=True))  # fmt: skip

    p = sub.add_parser("eval", help="greedy accuracy (and pass@k) of a checkpoint on an environment")
    p.add_argument("checkpoint", help="a model folder (as-is, exported, or a run checkpoint)")
    p.add_argument("--env", required=True, help="built-in env name or plug-in 'file.py:make' / 'pkg.module:make'")
    p.add_argument("--env-args", help="factory arguments as YAML, e.g. '{digits: 4}'")
    p.add_argument("--split", default="test")
    config_flag(p, "--n", EvalConfig, "n", "problems to evaluate")
    config_flag(p, "--samples", EvalConfig, "samples", "also sample K answers per problem: pass@1, pass@K")
    config_flag(p, "--temperature", EvalConfig, "temperature", "sampling temperature for --samples")
    config_flag(p, "--max-new-tokens", EvalConfig, "max_new_tokens", "most answer tokens per problem")
    config_flag(p, "--batch-size", EvalConfig, "batch_size", "prompts per generation batch")
    config_flag(p, "--seed", RunConfig, "seed", "seeds the problems drawn and the sampling")
    p.add_argument("--thoughts", choices=("own", "shuffled"), default="own",
                   help="`shuffled`: each greedy answer reads another prompt's thoughts (does the policy use them?)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("export", help="a Hugging Face folder (LoRA merged) with the feedback weights")
    p.add_argument(
        "source", help="a run folder (its newest checkpoint), RUN/checkpoints/step-N, or a model folder"
    )
    p.add_argument("out", help="the folder to write (refused if it exists and is not empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(fn=cmd_export)

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

    from neuralese.codec.commands import add_commands

    add_commands(sub, number_flag, config_flag)

    p = sub.add_parser("config", help="document every config field, or print a recipe fully resolved")
    p.add_argument("recipe", nargs="?")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(fn=cmd_config)
    return parser


def one_paragraph(message: str) -> str:
    """A message on one line, even when a library's text spans lines; spaces inside a line are
    kept, so a value it quotes (a prompt of three spaces) reads as it is."""
    return re.sub(r"\s*\n\s*", " ", message.strip())


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line parsed; an argument no verb takes is reported by the verb it was given to
    (argparse's top-level parser reports it as its own, pointing at `neuralese --help`), with the
    nearest flag of that verb."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        words = [args.command, *([args.action] if getattr(args, "action", None) else [])]
        verb = parser
        for word in words:
            verb = next(a for a in verb._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
        flags = [f for a in verb._actions for f in a.option_strings]
        first = extra[0].split("=")[0]
        near = difflib.get_close_matches(first, flags, n=1) if first.startswith("-") else []
        hint = f"; did you mean {near[0]}?" if near else ""
        message = f"unrecognized arguments: {' '.join(extra)}{hint} (see `{verb.prog} --help`)"
        raise UsageError(message, verb.prog)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except UsageError as e:
        print(f"{e.prog}: error: {one_paragraph(str(e))}", file=sys.stderr)
        return 2
    _quiet_libraries()
    try:
        args.fn(args)
    except NeuraleseError as e:
        message = one_paragraph(str(e))
        print(f"neuralese {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and cut: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
