"""`neuralese planner pretrain RECIPE`: stage 0 of a planner over codes and of its decoder.

The recipe's environment is the planner's (`env.name: neuralese.planner:planned`, neuralese.planner.env).
Two ordinary stage-0 runs (neuralese.pretrain) over two views of its task:

    decoder   view `decode`: reads `prompt + plan`, writes the answer in the task's own tokens; the run's
              `model.tiny` and `pretrain` without `model.codec` (`planner.decoder_*` where set), into
              `env.args.decoder`
    planner   view `plan`: reads the prompt, writes the plan; the run's model as it is (a dense-token model
              with `model.codec`, or a token model), into `model.path`

Each ends with its as-is accuracy on its own view (the decoder's answers from the true plans, the
planner's plans written exactly); `neuralese train` then scores the planner's plans through the decoder.
"""

from __future__ import annotations

import copy
from pathlib import Path

from neuralese.config import RunConfig
from neuralese.console import Console
from neuralese.errors import ConfigError
from neuralese.planner.env import DECODER_TOKENS, planned
from neuralese.plugins import is_reference, resolve
from neuralese.pretrain import pretrain

PARTS = ("decoder", "planner")


def check_planner_run(cfg: RunConfig) -> None:
    """A ConfigError naming the key unless the recipe's environment is the planner's with a decoder."""
    name = cfg.env.name
    if not is_reference(name) or resolve(name, "environment factory", "env.name") is not planned:
        raise ConfigError(
            f"key 'env.name' is {name!r}; a planner run's environment is 'neuralese.planner:planned' "
            "(env.args: env, args, decoder, decoder_tokens), which views the task as plans and answers"
        )
    if not cfg.env.args.get("decoder"):
        raise ConfigError("key 'env.args.decoder' must name the decoder's folder (stage 0 writes it there)")
    if cfg.env.args.get("view", "planned") != "planned":
        raise ConfigError(
            f"key 'env.args.view' is {cfg.env.args['view']!r}; leave it out (planned): this command sets "
            "each stage's view itself"
        )


def part_config(cfg: RunConfig, part: str) -> RunConfig:
    """The stage-0 config of `part` (the module docstring)."""
    out = copy.deepcopy(cfg)
    if part == "decoder":
        out.env.args["view"] = "decode"
        out.model.path = cfg.env.args["decoder"]
        out.model.codec, out.model.codec_embedding = None, "atomic"
        out.pretrain.output_dir = None
        out.pretrain.max_steps = cfg.planner.decoder_max_steps or cfg.pretrain.max_steps
        out.pretrain.learning_rate = cfg.planner.decoder_learning_rate or cfg.pretrain.learning_rate
        out.eval.max_new_tokens = cfg.env.args.get("decoder_tokens", DECODER_TOKENS)
    else:
        out.env.args["view"] = "plan"
    return out


def pretrain_planner(
    cfg: RunConfig, parts: tuple[str, ...] = PARTS, overwrite: bool = False, console: Console | None = None
) -> dict[str, Path]:
    """Stage 0 of each of `parts` (decoder first); their folders by part."""
    check_planner_run(cfg)
    if cfg.model.tiny is None:
        raise ConfigError("key 'model.tiny' must be set: planner pretrain builds both models from a config")
    console = console or Console("neuralese planner pretrain")
    folders = {}
    for part in (p for p in PARTS if p in parts):
        stage = part_config(cfg, part)
        console.notice(f"{part}: stage 0 on view {stage.env.args['view']!r}")
        folders[part] = pretrain(stage, overwrite=overwrite, console=console)
    return folders
