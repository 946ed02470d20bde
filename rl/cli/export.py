"""`neuralese export`: a Hugging Face model folder (LoRA merged, safetensors) with the feedback weights.

    neuralese export RUN_DIR_OR_CHECKPOINT OUT [--overwrite]

Prints one JSON line: the folder written, the checkpoint it came from and its step.
"""

from __future__ import annotations

import argparse
import json


def cmd_export(args: argparse.Namespace) -> None:
    """Write the Hugging Face folder; one JSON line naming it and its source."""
    from neuralese.export import export
    from neuralese.load import locate

    src = locate(args.source)
    out = export(args.source, args.out, overwrite=args.overwrite)
    origin = str(src.checkpoint or src.path)
    print(json.dumps({"stage": "export", "out": str(out), "source": origin, "step": src.step}))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`export`, on the CLI's subparsers."""
    p = sub.add_parser("export", help="a Hugging Face folder (LoRA merged) with the feedback weights")
    p.add_argument(
        "source", help="a run folder (its newest checkpoint), RUN/checkpoints/step-N, or a model folder"
    )
    p.add_argument("out", help="the folder to write (refused if it exists and is not empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(fn=cmd_export)
