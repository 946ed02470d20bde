"""Training from Python, as `neuralese train` trains: one function for a notebook and the CLI alike.

    import neuralese
    result = neuralese.train("recipes/quickstart.yaml", ["rl.steps=20"], out="runs/notebook")
    result["eval/accuracy"], result["start"]["eval/accuracy"]      # after RL, and before it
    policy = neuralese.load_policy("runs/notebook")

`neuralese.Trainer(cfg)` is the loop itself, for stepping it by hand (`trainer.step()`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuralese.build import check_run
from neuralese.config import RunConfig, apply_override, from_dict, load_recipe_or_run, to_dict
from neuralese.trainer import Trainer


def train(
    config: RunConfig | str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    resume: bool = False,
    out: str | Path | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Train `config`: a RunConfig, a recipe file, or a run folder (its config.yaml, continued in that
    folder with `resume`). `overrides` as `--set` takes them (`"rl.steps=20"`), `out` as `--out`.
    Returns the final evaluation (`eval/accuracy`, ...), with the one before the first step under
    `start`. The config is checked whole before anything loads; `config` itself is not changed.
    `source` names the config in error messages (the CLI's recipe file)."""
    if isinstance(config, RunConfig):
        source, data = source or "<config>", to_dict(config)
        for item in overrides:
            apply_override(data, item, source=source)
        cfg = from_dict(RunConfig, data, source)
    else:
        source, cfg = source or str(config), load_recipe_or_run(config, overrides)
    if out is not None:
        cfg.output_dir = str(out)
    check_run(cfg, source)  # every rule of the config, its thought mode's and its policy kind's
    return Trainer(cfg, resume=resume).train()
