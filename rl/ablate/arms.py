"""The arms of an ablation and the plan that runs them: built-in arms, spec files, controls.

An arm is a set of recipe overrides for `neuralese train` and the stage-0 model it starts from.
Without a spec, the built-in arms (from one stage-0 model, the recipe's own):

    token        neuralese.mode off: token-only GRPO on the plain prompt
    latent-w0    latent mode, `neuralese.num_thoughts` thoughts, window 0 (recorded thoughts)
    latent-w2    latent mode, window 2
    latent-full  latent mode, window full (exact BPTT through every thought)
    hybrid-w0    hybrid mode (a thought beside every written token), window 0
    hybrid-w4    hybrid mode, window 4

A spec file (YAML) names stage-0 variants (overrides for `neuralese pretrain`, e.g. an
answer-only and a chain-of-thought stage 0) and arms, each with its stage 0 and controls:

    stage0:
      answer: [env.args.cot=false]
      cot: [env.args.cot=true]
    arms:
      token: {stage0: answer, set: [neuralese.mode=off]}
      soft: {stage0: cot, set: [neuralese.space=embedding, neuralese.input=latent_only],
             controls: [shuffled, pause]}

Controls say whether a thought's content is used: `shuffled` scores the trained policy when
each answer reads another prompt's thoughts; `pause` trains a twin arm (`NAME+pause`) whose
thoughts are one learned vector for every input (`neuralese.space: pause`): positions without
content. Neuralese built-in arms get `shuffled`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from neuralese.build import check_run
from neuralese.config import RunConfig, load_config
from neuralese.errors import ConfigError, UsageError
from neuralese.modes import get_mode

CONTROLS = ("shuffled", "pause")
# A pause twin: the same arm with thoughts that carry nothing (and nothing sampled).
PAUSE_SETS = ["neuralese.space=pause", "neuralese.embedding_weights=softmax", "neuralese.noise_std=0"]


@dataclass
class Arm:
    """One configuration trained from one stage-0 model."""

    name: str
    sets: list[str]
    stage0: str = "default"
    controls: tuple[str, ...] = ()
    control_of: str | None = None  # the arm this one is the pause control of


@dataclass
class Plan:
    """What one ablation runs: the recipe and its overrides, the stage-0 variants, the arms (pause twins
    included), and how many seeds on how many torch threads."""

    recipe: str
    stage0: dict[str, list[str]]
    arms: dict[str, Arm]
    sets: list[str] = field(default_factory=list)  # overrides of every run (--set, and --steps)
    seeds: int = 3
    threads: int = 1
    spec: str | None = None
    models: dict[str, str] = field(default_factory=dict)  # --stage0 VARIANT=PATH: where a variant's model is

    def config(self, *sets: str) -> RunConfig:
        """The recipe with the plan's overrides, then `sets` (an arm's, a stage-0 variant's)."""
        return load_config(self.recipe, [*self.sets, *sets])


def builtin_arms() -> dict[str, Arm]:
    """The arms an ablation runs without a spec (module docstring)."""
    windows = {
        "latent-w0": ("latent", 0),
        "latent-w2": ("latent", 2),
        "latent-full": ("latent", "full"),
        "hybrid-w0": ("hybrid", 0),
        "hybrid-w4": ("hybrid", 4),
    }
    arms = {"token": Arm("token", ["neuralese.mode=off", "neuralese.tbptt_window=0"])}
    for name, (mode, window) in windows.items():
        arms[name] = Arm(
            name, [f"neuralese.mode={mode}", f"neuralese.tbptt_window={window}"], controls=("shuffled",)
        )
    return arms


def load_spec(path: str | None) -> tuple[dict[str, list[str]], dict[str, Arm]]:
    """Stage-0 variants and arms from a spec file (module docstring), or the built-ins."""
    if path is None:
        return {"default": []}, builtin_arms()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--spec {path}: cannot read it as YAML: {e}") from None
    if not isinstance(data, dict) or set(data) - {"stage0", "arms"} or not isinstance(data.get("arms"), dict):
        raise ConfigError(f"--spec {path}: expected a mapping with `arms` (and optional `stage0`)")
    stage0 = {
        "default": [],
        **{k: _strings(v, path, f"stage0.{k}") for k, v in (data.get("stage0") or {}).items()},
    }
    arms = {}
    for name, a in data["arms"].items():
        if not isinstance(a, dict) or set(a) - {"stage0", "set", "controls"}:
            raise ConfigError(f"--spec {path}: arms.{name} must be a mapping of stage0, set, controls")
        controls = tuple(_strings(a.get("controls", []), path, f"arms.{name}.controls"))
        bad = [c for c in controls if c not in CONTROLS] + (
            [a.get("stage0")] if a.get("stage0", "default") not in stage0 else []
        )
        if bad:
            raise ConfigError(
                f"--spec {path}: arms.{name}: unknown {bad}; controls are {CONTROLS}, "
                f"stage0 variants {list(stage0)}"
            )
        arms[name] = Arm(
            name, _strings(a.get("set", []), path, f"arms.{name}.set"), a.get("stage0", "default"), controls
        )
    return stage0, arms


def _strings(value, path: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"--spec {path}: {key} must be a list of strings, got {value!r}")
    return value


def with_controls(arms: dict[str, Arm]) -> dict[str, Arm]:
    """The arms followed by their pause twins."""
    out = dict(arms)
    for arm in arms.values():
        if "pause" in arm.controls:
            name = f"{arm.name}+pause"
            out[name] = Arm(name, [*arm.sets, *PAUSE_SETS], arm.stage0, (), control_of=arm.name)
    return out


def make_plan(
    recipe: str,
    spec: str | None = None,
    arms: str | None = None,
    sets: list[str] | tuple[str, ...] = (),
    *,
    steps: int | None = None,
    seeds: int = 3,
    threads: int = 1,
    models: list[str] | tuple[str, ...] = (),
) -> Plan:
    """The plan of `neuralese ablate`: the spec's arms (or the built-ins), those `arms` names
    (comma-separated; default all) with their pause twins, `steps` as an override of rl.steps, and
    `models` (VARIANT=PATH) as the folders of stage-0 variants shared with another ablation."""
    stage0, spec_arms = load_spec(spec)
    paths = {}
    for item in models:
        variant, sep, path = item.partition("=")
        if not sep or not path or variant not in stage0:
            raise UsageError(
                f"--stage0 {item!r}: expected VARIANT=PATH with VARIANT one of the spec's stage-0 variants "
                f"({', '.join(stage0)})"
            )
        paths[variant] = path
    chosen = (
        list(spec_arms)
        if arms is None
        else list(dict.fromkeys(a.strip() for a in arms.split(",") if a.strip()))
    )
    unknown = [a for a in chosen if a not in spec_arms]
    if unknown or not chosen:
        raise UsageError(f"--arms: unknown {unknown or 'none given'}; choose from {', '.join(spec_arms)}")
    sets = [*sets, *([f"rl.steps={steps}"] if steps is not None else [])]
    planned = with_controls({a: spec_arms[a] for a in chosen})
    return Plan(recipe, stage0, planned, sets, seeds, threads, spec, paths)


def feedback_label(cfg: RunConfig, weights: bool = False) -> str:
    """What an arm feeds back, for a table: `token` without feedback, else its mode, thought space (with
    `weights`, how embedding-space weights are formed) and input."""
    nz = cfg.neuralese
    if not get_mode(nz).feeds_back:
        return "token"
    space = (
        f"{nz.space} ({nz.embedding_weights})" if weights and nz.space in ("embedding", "mix") else nz.space
    )
    return f"{nz.mode}, {space}, {nz.input}"


def check(plan: Plan) -> None:
    """Resolve every stage-0 variant and arm against the recipe (the errors `neuralese` would give), and
    print what each arm trains."""
    for sets in plan.stage0.values():
        plan.config(*sets)
    for arm in plan.arms.values():
        cfg = plan.config(*arm.sets)
        check_run(cfg, f"{plan.recipe} with arm {arm.name!r}")  # what its thought mode and policy kind can do
        stages = f", curriculum {cfg.curriculum.stages} stages" if cfg.curriculum.stages else ""
        print(
            f"ablate: {arm.name}: stage 0 {arm.stage0!r}, {feedback_label(cfg)}{stages}, "
            f"answer budget {cfg.rl.max_new_tokens}, {cfg.rl.algorithm}, window {cfg.neuralese.tbptt_window}"
        )
