"""Where every arm starts: the stage-0 models, and each arm's accuracy at switch-on (its policy before
any RL step).

- Stage 0 runs once per variant the arms use: the recipe's `model.path` serves the `default` variant
  if it holds a model, else `neuralese pretrain` writes OUT/as-is-VARIANT (OUT/stage0.json: wall time).
  `--stage0 VARIANT=PATH` puts a variant's model at PATH instead, so ablations that share a stage 0
  (another step count, other arms) train it once.
  A model trained here records what made it (MODEL/stage0_settings.json: the tiny model's shape, the
  env, the pretrain schedule, the seed); a later plan whose stage 0 differs is refused, not started
  from it (the `default` model sits at the recipe's `model.path`, which every OUT shares).
- The as-is models are scored on the plain prompt (OUT/as-is.json), and every arm at switch-on, the
  start of its curve and the baseline of its Δ (OUT/switch_on.json). Both are cached.
- `neuralese ablate --switch-on` stops there: each arm with its own thoughts and, for arms with
  thoughts, with each answer reading another prompt's (`shuffled`). The gap between the two is what
  the answer takes from its thoughts before RL has taught it anything (OUT/switch_on.md and
  OUT/switch_on_table.json). Nothing is trained but the stage-0 models.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from neuralese.ablate.arms import Arm, Plan, feedback_label
from neuralese.ablate.processes import run_child
from neuralese.build import build_policy
from neuralese.config import NeuraleseConfig, RunConfig, flat_dict, to_dict
from neuralese.curriculum import Curriculum
from neuralese.envs import make_env
from neuralese.errors import ConfigError
from neuralese.evaluate import evaluate
from neuralese.policy import NeuralesePolicy
from neuralese.preflight import targets


def as_is_path(plan: Plan, cfg: RunConfig, out: Path, variant: str) -> Path:
    """Where a stage-0 variant's model is: the folder `--stage0 VARIANT=PATH` names, else the recipe's
    `model.path` for `default`, else OUT/as-is-VARIANT."""
    if variant in plan.models:
        return Path(plan.models[variant])
    if variant == "default":
        return Path(cfg.model.path) if cfg.model.path else out / "as-is"
    return out / f"as-is-{variant}"


SETTINGS_FILE = "stage0_settings.json"  # beside a stage-0 model this ablation trained: what made it


def stage0_settings(cfg: RunConfig) -> dict:
    """What a stage-0 model depends on: the tiny model's shape, the data it reads and how it trains.
    Not where it goes nor what RL does after it."""
    env = to_dict(cfg.env)
    for k in ("test_split", "test_size"):
        env.pop(k, None)
    pretrain = to_dict(cfg.pretrain)
    pretrain.pop("output_dir", None)
    model = to_dict(cfg.model)
    return {
        "seed": cfg.seed,
        "model": {k: model[k] for k in ("tiny", "codec", "codec_embedding")},
        "env": env,
        "pretrain": pretrain,
    }


def check_reuse(path: Path, variant: str, cfg: RunConfig, fix: str | None = None) -> None:
    """Refuse to reuse a stage-0 model this ablation trained under other settings (another width, env
    or schedule): its arms would silently start from the wrong model. A model without the record (a
    user's own checkpoint) is taken as it is."""
    record = path / SETTINGS_FILE
    if not record.is_file():
        return
    # Through JSON both ways, so that tuples compare as the lists the record holds.
    was = flat_dict(json.loads(record.read_text()))
    now = flat_dict(json.loads(json.dumps(stage0_settings(cfg))))
    # A setting newer than the record: the model was trained as its default behaves.
    default = flat_dict(json.loads(json.dumps(stage0_settings(RunConfig()))))
    was |= {k: default[k] for k in now.keys() - was.keys() if k in default}
    diff = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
    if diff:
        shown = "; ".join(f"{k}: {was.get(k)!r} there, {now.get(k)!r} here" for k in diff[:5])
        raise ConfigError(
            f"stage 0 ({variant}): {path} holds a model trained under other settings ({shown}"
            f"{'; ...' if len(diff) > 5 else ''}). Give this ablation {fix or where(variant)}, or remove {path} to "
            "train it again"
        )


def where(variant: str) -> str:
    """How an ablation gives a stage-0 variant a folder of its own."""
    return "its own --out and model.path" if variant == "default" else "its own --out"


def ensure_as_is(plan: Plan, out: Path) -> dict[str, Path]:
    """The as-is model of every stage-0 variant the arms use: trained here unless it exists (and then
    refused if it was trained here under other settings)."""
    paths = {}
    for variant in dict.fromkeys(a.stage0 for a in plan.arms.values()):
        cfg = plan.config(*plan.stage0[variant])
        path = as_is_path(plan, cfg, out, variant)
        paths[variant] = path
        if (path / "config.json").is_file():
            check_reuse(
                path, variant, cfg, f"another --stage0 {variant}=PATH" if variant in plan.models else None
            )
            print(f"ablate: stage 0 ({variant}): using {path}", flush=True)
            continue
        if cfg.model.tiny is None:
            raise ConfigError(
                f"{path} holds no model and the recipe {plan.recipe} has no model.tiny to train one"
            )
        print(f"ablate: stage 0 ({variant}): training the as-is model into {path}", flush=True)
        sets = [*plan.sets, *plan.stage0[variant], f"pretrain.output_dir={path}"]
        wall, _ = run_child(
            ["pretrain", str(Path(plan.recipe).resolve()), *[x for s in sets for x in ("--set", s)]],
            out / "logs" / f"stage0-{variant}.log",
            plan.threads,
        )
        (path / SETTINGS_FILE).write_text(json.dumps(stage0_settings(cfg), indent=2))
        record = out / "stage0.json"
        done = json.loads(record.read_text()) if record.is_file() else {}
        done[variant] = {"model": str(path), "wall_s": wall, "overrides": plan.stage0[variant]}
        record.write_text(json.dumps(done, indent=2))
    return paths


def as_is_plain(plan: Plan, as_is: dict[str, Path], out: Path) -> dict[str, dict]:
    """Greedy accuracy of each as-is model on the plain prompt (no thoughts), within the longest answer
    budget of its arms. Cached in OUT/as-is.json."""
    cache = out / "as-is.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    result = {}
    for variant, path in as_is.items():
        policy = NeuralesePolicy.from_pretrained(path, config=NeuraleseConfig(mode="off"))
        # A chain must fit to be scored: the longest answer budget of the arms that start from the model,
        # and at least what its own stage-0 format writes (arms with thoughts may give it less room).
        budget = max(
            format_budget(plan, variant, policy.tokenizer),
            *(plan.config(*a.sets).eval.max_new_tokens for a in plan.arms.values() if a.stage0 == variant),
        )
        if known.get(variant, {}).get("model") != str(path) or known[variant].get("max_new_tokens") != budget:
            cfg = plan.config(f"eval.max_new_tokens={budget}")
            known[variant] = {"model": str(path), "max_new_tokens": budget, **evaluate_policy(policy, cfg)}
        result[variant] = known[variant]
    cache.write_text(json.dumps(known, indent=2))
    return result


def format_budget(plan: Plan, variant: str, tokenizer: PreTrainedTokenizerBase) -> int:
    """Tokens a stage-0 variant's own targets take (eos included), longest over the problems scored."""
    cfg = plan.config(*plan.stage0[variant])
    env = make_env(cfg.env.name, cfg.env.args)
    rows = env.dataset(cfg.env.test_split, cfg.eval.n, cfg.seed)
    return 1 + max(len(ids) for ids in tokenizer(targets(rows), add_special_tokens=False).input_ids)


def switch_on(plan: Plan, arm: Arm, cfg: RunConfig, out: Path) -> float:
    """Greedy accuracy of the arm's policy before any RL step (its curriculum's first stage). Cached."""
    cache = out / "switch_on.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    key = json.dumps([cfg.model.path, arm.sets, plan.sets])
    if key not in known:
        known[key] = {"arm": arm.name, **evaluate_policy(step0_policy(cfg), cfg)}
        cache.write_text(json.dumps(known, indent=2))
    return known[key]["accuracy"]


def step0_policy(cfg: RunConfig) -> NeuralesePolicy:
    """The policy `neuralese train` starts from: with its curriculum's first stage of thoughts."""
    policy = build_policy(cfg, "cpu")
    Curriculum(cfg.curriculum, policy.config)  # it sets the thoughts of its first stage
    return policy


def evaluate_policy(policy: NeuralesePolicy, cfg: RunConfig, thoughts: str = "own") -> dict:
    """What `neuralese eval` prints, on the problems every run of the ablation is scored on."""
    e = cfg.eval
    env = make_env(cfg.env.name, cfg.env.args)
    return evaluate(
        policy.eval(),
        env,
        cfg.env.test_split,
        e.n,
        cfg.seed,
        e.batch_size,
        e.max_new_tokens,
        env_name=cfg.env.name,
        progress=False,
        thoughts=thoughts,
    )


# ----------------------------------------------------------------------------- neuralese ablate --switch-on


def switch_on_row(arm: Arm, cfg: RunConfig) -> dict:
    """The arm's step-0 policy: own thoughts and, where it has thoughts, shuffled ones."""
    policy = step0_policy(cfg)
    own = evaluate_policy(policy, cfg)
    thoughts = policy.feedback_on and policy.config.num_thoughts > 0
    shuffled = evaluate_policy(policy, cfg, thoughts="shuffled")["accuracy"] if thoughts else None
    return {
        "arm": arm.name,
        "stage0": arm.stage0,
        "feedback": feedback_label(cfg, weights=True),
        "accuracy": own["accuracy"],
        "shuffled": shuffled,
        "positions": own["mean_generated_positions"],
        "n": own["n"],
    }


def switch_on_table(plan: Plan, out: Path) -> str:
    """Every arm scored at switch-on (module docstring); the table, also written to OUT/switch_on.md."""
    as_is = ensure_as_is(plan, out)
    rows = []
    for arm in plan.arms.values():
        rows.append(switch_on_row(arm, plan.config(f"model.path={as_is[arm.stage0]}", *arm.sets)))
        r = rows[-1]
        print(
            f"switch_on: {arm.name}: {r['accuracy']:.3f} (shuffled {r['shuffled']}), {r['positions']:.1f} positions",
            flush=True,
        )
    lines = [
        "| arm | stage 0 | feedback (mode, space, input) | accuracy | shuffled thoughts | positions |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        shuffled = "—" if r["shuffled"] is None else f"{r['shuffled']:.3f}"
        lines.append(
            f"| {r['arm']} | {r['stage0']} | {r['feedback']} | {r['accuracy']:.3f} | {shuffled} | "
            f"{r['positions']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "switch_on.md").write_text(text)
    (out / "switch_on_table.json").write_text(json.dumps(rows, indent=2))
    return text
