"""Reading a recipe: YAML to a checked `RunConfig` (types coerced, ranges and cross-field rules checked),
`--set` overrides, and writing it back."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from neuralese.config.codec import check_codec
from neuralese.config.sections import (
    RunConfig,
)
from neuralese.errors import ConfigError
from neuralese.io import describe_yaml_error, read_yaml
from neuralese.ranges import (
    Range,
    check_ranges,
    range_of,
)

# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML recipe, apply `key.sub=value` overrides, and return a checked RunConfig."""
    path = Path(path)
    data = read_yaml(path, "recipe file", ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    for item in overrides:
        apply_override(data, item, source=str(path))
    cfg = from_dict(RunConfig, data, source=str(path))
    validate(cfg, source=str(path))
    return cfg


RUN_CONFIG = "config.yaml"
"""A run folder's resolved config, beside its metrics.jsonl and checkpoints/."""


def run_folder_of(path: str | Path) -> Path | None:
    """The run folder `path` names: the folder itself, or the folder of its `config.yaml`; None for a
    recipe anywhere else."""
    path = Path(path)
    if path.is_file() and path.name != RUN_CONFIG:
        return None
    folder = path if path.is_dir() else path.parent
    holds_run = (folder / "metrics.jsonl").is_file() or (folder / "checkpoints").is_dir()
    return folder if (folder / RUN_CONFIG).is_file() and holds_run else None


def load_recipe_or_run(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """`load_config` of a recipe; of a run folder (or its config.yaml), the run's config with
    `output_dir` set to that folder, wherever it was started from or has moved to."""
    run = run_folder_of(path)
    if run is None:
        return load_config(path, overrides)
    cfg = load_config(run / RUN_CONFIG, overrides)
    cfg.output_dir = str(run)
    return cfg


def apply_override(data: dict, item: str, source: str = "--set") -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (`1e-3`, `[a, b]`, `null`)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {item!r}: key {key.strip()!r} has an empty part; expected key.sub=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {describe_yaml_error(e)}") from None
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {p!r} is not a section in {source}")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type, data: Any, source: str = "<dict>", prefix: str = ""):
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'the recipe'} must be a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            choices = [f"{prefix}{n}" for n in names]
            near = difflib.get_close_matches(full, choices, n=1, cutoff=0.5)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{source}: unknown key '{full}'{hint}")
        kwargs[key] = _coerce(hints[key], value, source, full)
    return cls(**kwargs)


YAML_TRUE = ("on", "yes", "true", "y")
YAML_FALSE = ("off", "no", "false", "n")


def _coerce(tp: Any, value: Any, source: str, key: str):
    """Check `value` against type hint `tp`; returns the value (dataclasses built, ints widened)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        shaped = [o for o in options if _same_shape(o, value)]
        if len(shaped) == 1:  # a mapping for a section, a list for a list: its own error names the inner key
            return _coerce(shaped[0], value, source, key)
        for option in options:
            try:
                return _coerce(option, value, source, key)
            except ConfigError:
                pass
        raise ConfigError(f"{source}: key '{key}' expects {_describe(tp)}, got {_show(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{source}: key '{key}' expects null, got {_show(value)}")
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads `off`, `no` as false and `on`, `yes` as true
            spellings = YAML_TRUE if value else YAML_FALSE
            matches = [o for o in typing.get_args(tp) if isinstance(o, str) and o.lower() in spellings]
            if len(matches) == 1:
                return matches[0]
        raise ConfigError(f"{source}: key '{key}' expects one of {_describe(tp)}, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        if value is not None and not isinstance(value, dict):
            raise ConfigError(
                f"{source}: key '{key}' expects {tp.__name__} (a mapping of its fields), got {_show(value)}"
            )
        return from_dict(tp, {} if value is None else value, source, prefix=f"{key}.")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: key '{key}' expects a list, got {_show(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(item_tp, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping, got {_show(value)}")
        return dict(value)
    if tp is Any:
        return value
    return _scalar(tp, value, source, key)


def _scalar(tp: Any, value: Any, source: str, key: str):
    """`value` as the scalar type `tp` (bool, int, float or str): ints widen to float, never bools."""
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{source}: key '{key}' expects {_describe(tp)}, got {_show(value)}")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:  # a declared range: `float > 0`, `int in [0, 4294967295]`
        rng = range_of(tp)
        shown = "" if rng is None or rng == Range() else f" {rng}"
        return _describe(typing.get_args(tp)[0]) + shown
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(t) for t in typing.get_args(tp))
    if origin is Literal:
        return ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _same_shape(tp: Any, value: Any) -> bool:
    """A mapping for a section or dict type, a list for a list type."""
    if isinstance(value, dict):
        return _is_section(tp) or typing.get_origin(tp) is dict
    return isinstance(value, list) and typing.get_origin(tp) is list


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)  # a Range is a dataclass instance


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# accelerate's tracker names (accelerate.utils.LoggerType); one not installed is skipped with a warning.
TRACKERS = (
    "tensorboard",
    "wandb",
    "aim",
    "comet_ml",
    "mlflow",
    "clearml",
    "dvclive",
    "swanlab",
    "trackio",
    "all",
)


Rule = tuple[bool, str, str, Any]  # (holds, key, what the key must be, its value)


def validate(cfg: RunConfig, source: str = "<config>") -> None:
    """Every declared range (neuralese.ranges), then the checks that span fields; `load_config` calls it,
    and so do the trainer and stage 0 for a config built in Python. The first rule broken is the error."""
    check_ranges(cfg, source)
    _enforce([*_training_rules(cfg), *_raft_rules(cfg), *_tiny_rules(cfg)], source)
    check_codec(cfg.codec, source)
    _enforce([*_codec_rules(cfg), *_section_rules(cfg)], source)


def _enforce(rules: list[Rule], source: str) -> None:
    for ok, key, what, value in rules:
        if not ok:
            raise ConfigError(f"{source}: key '{key}' must be {what}, got {value!r}")


def _training_rules(cfg: RunConfig) -> list[Rule]:
    """Logging, the algorithm's group, the thought sampler, the curriculum and stage 0's formats."""
    rl, nz, cur = cfg.rl, cfg.neuralese, cfg.curriculum
    unknown = [t for t in cfg.log.trackers if t not in TRACKERS]
    rules: list[Rule] = [
        (not unknown, "log.trackers", f"accelerate's tracker names ({', '.join(TRACKERS)}) or []", unknown)
    ]
    if rl.algorithm in ("grpo", "dr_grpo", "rloo"):
        why = f">= 2 for {rl.algorithm} (group-relative advantages need a group)"
        rules.append((rl.samples_per_prompt >= 2, "rl.samples_per_prompt", why, rl.samples_per_prompt))
    if rl.dynamic_sampling:
        why = f"false unless rl.algorithm is grpo, dr_grpo or rloo (groups whose rewards differ; algorithm is {rl.algorithm!r})"
        rules.append((rl.algorithm in ("grpo", "dr_grpo", "rloo"), "rl.dynamic_sampling", why, True))
    if nz.embedding_weights != "softmax":
        rules += [
            (
                nz.space in ("embedding", "mix"),
                "neuralese.embedding_weights",
                f"'softmax' unless neuralese.space is 'embedding' or 'mix' (space is {nz.space!r})",
                nz.embedding_weights,
            ),
            (
                nz.noise_std == 0,
                "neuralese.noise_std",
                f"0 with embedding_weights {nz.embedding_weights!r} (one sampler per thought)",
                nz.noise_std,
            ),
        ]
    if isinstance(nz.layer, int):
        rules.append(
            (nz.layer != 0, "neuralese.layer", "a layer index other than 0 (0 is the embedding output)", 0)
        )
    if cur.stages > 0:
        rules.append(
            (
                cur.start <= cur.stages,
                "curriculum.start",
                f"in 0..curriculum.stages ({cur.stages})",
                cur.start,
            )
        )
    updates = rl.steps * rl.num_iterations
    if rl.warmup_steps and updates:  # a schedule still warming up when the run ends
        why = f"at most the run's optimizer steps, rl.steps x rl.num_iterations ({updates})"
        rules.append((rl.warmup_steps <= updates, "rl.warmup_steps", why, rl.warmup_steps))
    if cfg.pretrain.elided_steps:
        why = "false unless curriculum.stages > 0 (the formats it trains)"
        rules.append((cur.stages > 0, "pretrain.elided_steps", why, True))
    if cfg.pretrain.objective == "mixtures":  # the teacher's mixtures stand where thought formats would
        why = "'text' with pretrain.elided_steps or thought_tokens_max (thought-token formats of the target text)"
        formats = cfg.pretrain.elided_steps or cfg.pretrain.thought_tokens_max > 0
        rules.append((not formats, "pretrain.objective", why, "mixtures"))
        why = "'text' with model.codec (a dense-token model's vocabulary is the codec's codes)"
        rules.append((cfg.model.codec is None, "pretrain.objective", why, "mixtures"))
    return rules


def _raft_rules(cfg: RunConfig) -> list[Rule]:
    """RAFT's filter and its round mode: a pool of whole steps, each round inside one curriculum stage."""
    rl, cur = cfg.rl, cfg.curriculum
    rules: list[Rule] = []
    if rl.algorithm == "raft" and rl.raft_min_reward is None:
        why = "set when rl.raft_min_reward is null (with neither, every sample would be kept)"
        rules.append((rl.raft_top_k is not None, "rl.raft_top_k", why, None))
    if rl.raft_top_k is not None:
        why = f"null unless rl.algorithm is 'raft' (RAFT's filter; algorithm is {rl.algorithm!r})"
        rules.append((rl.algorithm == "raft", "rl.raft_top_k", why, rl.raft_top_k))
        why = f"below rl.samples_per_prompt ({rl.samples_per_prompt}), or null: the top k of a group that size keep it all"
        rules.append((rl.raft_top_k < rl.samples_per_prompt, "rl.raft_top_k", why, rl.raft_top_k))
    n = rl.raft_samples_per_round
    if n == 0:
        return rules
    why = f"0 unless rl.algorithm is 'raft' (the round mode of RAFT; algorithm is {rl.algorithm!r})"
    rules.append((rl.algorithm == "raft", "rl.raft_samples_per_round", why, n))
    step = rl.prompts_per_step * rl.samples_per_prompt
    why = f"a multiple of rl.prompts_per_step x rl.samples_per_prompt ({step}): a round is whole steps"
    rules.append((n % step == 0, "rl.raft_samples_per_round", why, n))
    if n % step == 0 and rl.steps:
        why = f"a multiple of the steps of a RAFT round ({n // step}): a last, unfinished round would never train"
        rules.append((rl.steps % (n // step) == 0, "rl.steps", why, rl.steps))
    if cur.stages > 0 and n % step == 0:
        # A pool holds one layout of thoughts: a round must not span a change of stage.
        why = "'steps' with rl.raft_samples_per_round > 0 (a round must end where a stage ends)"
        rules.append((cur.advance == "steps", "curriculum.advance", why, cur.advance))
        why = f"a multiple of the steps of a RAFT round ({n // step}), so that no round spans two stages"
        rules.append(
            (cur.steps_per_stage % (n // step) == 0, "curriculum.steps_per_stage", why, cur.steps_per_stage)
        )
    return rules


def _tiny_rules(cfg: RunConfig) -> list[Rule]:
    """Tiny models' shapes: transformers would only fail on them once the model is built."""
    rules: list[Rule] = []
    for key, tiny in (("model.tiny", cfg.model.tiny), ("reward_model.tiny", cfg.reward_model.tiny)):
        if tiny is not None:
            why = f"a divisor of {key}.hidden_size ({tiny.hidden_size})"
            rules.append((tiny.hidden_size % tiny.num_heads == 0, f"{key}.num_heads", why, tiny.num_heads))
    return rules


def _codec_rules(cfg: RunConfig) -> list[Rule]:
    """A dense-token model's codec."""
    rules: list[Rule] = []
    if cfg.model.codec is not None:
        why = "null unless model.tiny is set (stage 0 builds the dense model; a dense model folder keeps its codec)"
        rules.append((cfg.model.tiny is not None, "model.codec", why, cfg.model.codec))
    why = "'atomic' unless model.codec is set (only a dense model's codes are composed of tokens)"
    atomic = cfg.model.codec is not None or cfg.model.codec_embedding == "atomic"
    return [*rules, (atomic, "model.codec_embedding", why, cfg.model.codec_embedding)]


def _section_rules(cfg: RunConfig) -> list[Rule]:
    """Translators' models and kinds, and the reward list."""
    tr, rules = cfg.translate, []
    if tr.models:  # `translate fit` itself refuses an empty list
        rules += [
            (len(tr.models) >= 2, "translate.models", "a list of two or more model folders", tr.models),
            (len(set(tr.models)) == len(tr.models), "translate.models", "a list without repeats", tr.models),
        ]
    distinct = len(tr.kinds) >= 1 and len(set(tr.kinds)) == len(tr.kinds)
    rules.append(
        (
            distinct,
            "translate.kinds",
            "a non-empty list of distinct kinds ('linear', 'mlp', 'common')",
            tr.kinds,
        )
    )
    if cfg.rewards is not None:
        rules.append(
            (len(cfg.rewards) >= 1, "rewards", "a non-empty list (or null for the env's own)", cfg.rewards)
        )
    return rules


def to_dict(cfg) -> dict:
    """The config as plain data (for YAML and JSON)."""
    return dataclasses.asdict(cfg)


def flat_dict(data: dict, prefix: str = "") -> dict[str, object]:
    """Nested sections as dotted keys (`{"model": {"tiny": {"hidden_size": 32}}}` -> `model.tiny.hidden_size`),
    the keys `--set` takes; an env's `args`, lists and other values stay as they are."""
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "args":
            out.update(flat_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config; `load_config` reads it back to the same RunConfig."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe_fields(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, docstring) for every field, for `neuralese config` and the docs."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = " ".join(str(b.value.value).split())
    rows = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        sub = next((t for t in (tp, *typing.get_args(tp)) if _is_section(t)), None)
        if sub is not None and typing.get_origin(tp) is not list:
            rows.append((f"{prefix}{f.name}", sub.__name__, None, docs.get(f.name, "")))
            rows.extend(describe_fields(sub, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f"{prefix}{f.name}", _describe(tp), default, docs.get(f.name, "")))
        item = _list_item_section(tp)
        if item is not None:  # a list of sections (`rewards`): each entry's own fields, as `rewards[].fn`
            rows.extend(describe_fields(item, f"{prefix}{f.name}[]."))
    return rows


def _list_item_section(tp: Any) -> type | None:
    """The section a list type holds (`list[RewardConfig]`, or that or null), else None."""
    for t in (tp, *typing.get_args(tp)):
        if typing.get_origin(t) is list and _is_section(typing.get_args(t)[0]):
            return typing.get_args(t)[0]
    return None
