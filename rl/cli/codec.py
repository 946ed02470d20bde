"""`neuralese codec ...`: train a text codec, and use one.

    neuralese codec train RECIPE.yaml [--set key.sub=value ...] [--out DIR]
    neuralese codec encode CODEC (--text TEXT | --ids 3,17,4,9)
    neuralese codec decode CODEC --codes 503,17
    neuralese codec fit-map CHECKPOINT CODEC --env NAME [--env-args YAML] [--n N] --out MAP

Each prints one JSON line. Bad input (text with a piece outside the codec's vocabulary, ids that do
not divide into its chunks, a code outside its range, a damaged folder) is one error naming the codec
folder, the exit status 2.
"""

from __future__ import annotations

import argparse
import json

from neuralese.cli.flags import config_flag, env_args_of, env_flags, load_recipe, number_flag, recipe_command
from neuralese.config import RunConfig
from neuralese.errors import CodecError, UsageError
from neuralese.ranges import PositiveInt


def cmd_train(args: argparse.Namespace) -> None:
    """Train the recipe's codec; one JSON line with its held-out numbers."""
    cfg = load_recipe(args)  # before the heavy imports: a recipe mistake shows at once
    from neuralese.codec.train import train_codec
    from neuralese.io import read_json

    if args.out:
        cfg.codec.output_dir = args.out
    out = train_codec(cfg)
    r = read_json(out / "report.json", "codec report")
    keep = ("token_accuracy", "chunk_exact", "codes_used")
    print(
        json.dumps(
            {
                "stage": "codec",
                "codec": str(out),
                "level": r["level"],
                "tokens_per_code": r["tokens_per_code"],
                "quantizer": r["quantizer"],
                "bits_per_token": r.get("bits_per_token"),
                "held_out": {k: r["held_out"][k] for k in keep if k in r["held_out"]},
                "train_wall_s": r["train_wall_s"],
            }
        )
    )


def integers(text: str, flag: str) -> list[int]:
    """The comma-separated integers of a flag (`3,17,4`), at least one."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(
            f"argument {flag}: expects integers separated by commas, such as 3,17,4, got {text!r}"
        ) from None
    if not values:
        raise UsageError(f"argument {flag}: expects at least one integer, got {text!r}")
    return values


def cmd_encode(args: argparse.Namespace) -> None:
    """The codes (or continuous code) of a text or of token ids, as one JSON line."""
    import torch

    from neuralese.codec.model import load_codec

    codec = load_codec(args.codec)
    try:
        ids = codec.pad(codec.text_ids(args.text)) if args.text is not None else integers(args.ids, "--ids")
        if args.ids is not None and not all(0 <= i < codec.vocab_size for i in ids):
            raise CodecError(
                f"--ids {args.ids!r}: token ids must be in 0..{codec.vocab_size - 1} (its vocabulary)"
            )
        with torch.no_grad():
            batch = torch.tensor([ids])
            codes = codec.codes(batch)[0].tolist() if codec.fsq is not None else None
            vectors = None if codes is not None else codec.encode(batch)[0].tolist()
    except CodecError as e:
        raise CodecError(f"codec {args.codec}: {e}") from None
    shown = (
        {"codes": codes} if codes is not None else {"code": [[round(v, 5) for v in row] for row in vectors]}
    )
    print(json.dumps({**shown, "ids": ids, "tokens_per_code": codec.tokens_per_code}))


def cmd_decode(args: argparse.Namespace) -> None:
    """The text and token ids FSQ codes decode to, as one JSON line."""
    import torch

    from neuralese.codec.model import load_codec

    codec = load_codec(args.codec)
    codes = integers(args.codes, "--codes")
    try:
        ids = codec.decode_codes(torch.tensor([codes]))[0].tolist()
    except CodecError as e:
        raise CodecError(f"codec {args.codec}: {e}") from None
    print(json.dumps({"text": codec.tokenizer.decode(ids, skip_special_tokens=True), "ids": ids}))


def cmd_fit_map(args: argparse.Namespace) -> None:
    """Fit and save a map from a policy's thoughts to a codec's codes (for inspect --codec-map)."""
    from neuralese.codec.lens import MAP_CONFIG, fit_map
    from neuralese.codec.model import load_codec
    from neuralese.errors import CheckpointError
    from neuralese.io import atomic_dir, check_output_dir, check_replaceable
    from neuralese.load import load_policy

    env_args = env_args_of(args.env_args)
    out = check_output_dir(args.out, "codec fit-map --out")
    check_replaceable(out, "codec fit-map --out", MAP_CONFIG)
    codec = load_codec(args.codec)
    policy = load_policy(args.checkpoint)
    if not policy.feedback_on:
        raise CheckpointError(f"{args.checkpoint}: has neuralese mode 'off', so it has no thoughts to map")
    m = fit_map(policy, codec, args.env, env_args, args.n, args.seed, args.max_new_tokens, args.codec)
    with atomic_dir(out) as tmp:
        m.save(tmp)
    print(json.dumps({"stage": "codec-map", "map": str(out), **m.report}))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The `codec` command and its subcommands, on the CLI's subparsers."""
    codec = sub.add_parser(
        "codec", help="text codecs: n tokens to one dense token and back (neuralese.codec)"
    )
    csub = codec.add_subparsers(dest="action", required=True)
    recipe_command(
        csub,
        "train",
        cmd_train,
        "train a codec (level 1, or level 2 over codec.base) on the recipe's codec section",
        "the codec folder (default: codec.output_dir)",
        recipe="YAML recipe with a codec section (see recipes/)",
    )

    p = csub.add_parser("encode", help="the codes of a text, or of token ids (which must fill whole chunks)")
    p.add_argument("codec", help="a codec folder")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="text (padded to whole chunks)")
    what.add_argument("--ids", help="token ids of the codec's tokenizer, comma-separated")
    p.set_defaults(fn=cmd_encode)

    p = csub.add_parser("decode", help="the text FSQ codes decode to")
    p.add_argument("codec", help="a codec folder")
    p.add_argument("--codes", required=True, help="code indices, comma-separated")
    p.set_defaults(fn=cmd_decode)

    p = csub.add_parser(
        "fit-map", help="fit a map from a policy's thoughts to a codec's codes (for inspect --codec-map)"
    )
    p.add_argument(
        "checkpoint", help="a policy with thoughts: exported folder, run folder or RUN/checkpoints/step-N"
    )
    p.add_argument("codec", help="a codec folder")
    env_flags(p, "built-in env name or plug-in 'file.py:make' whose prompts are answered")
    p.add_argument("--out", required=True, help="the map folder to write")
    number_flag(p, "--n", PositiveInt, 512, "train prompts answered for pairs (the last fifth held out)")
    number_flag(p, "--max-new-tokens", PositiveInt, 16, "most answer tokens per prompt")
    config_flag(p, "--seed", RunConfig, "seed", "seeds the problems drawn")
    p.set_defaults(fn=cmd_fit_map)
