"""Ablation: does neuralese RL beat token RL on a task, and does it use its thoughts? One command, tables, a plot.

    python scripts/ablate.py recipes/ablate_multiplication.yaml --seeds 3
    python scripts/ablate.py recipes/ablate_chase.yaml --spec recipes/arms/chase.yaml --seeds 3
    python scripts/ablate.py RECIPE --seeds 3 [--steps N] [--out DIR] [--arms a,b ...] [--spec ARMS.yaml]
                             [--set key=value ...] [--threads 1]

An arm is a set of recipe overrides for `neuralese train` and the stage-0 model it starts
from. Without `--spec`, the built-in arms (from one stage-0 model, the recipe's own):

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

Steps:

1. Stage 0 once per variant: the recipe's `model.path` serves the `default` variant if it
   holds a model, else `neuralese pretrain` writes OUT/as-is-VARIANT (stage0.json: wall time).
2. Every arm is scored at switch-on (its policy before any RL step; OUT/switch_on.json),
   the start of its curve and the baseline of its Δ.
3. Each arm x seed is its own `python -m neuralese.cli train` process, so its peak RSS is its own,
   with `seed` = the RL seed (sampling) and `data_seed` = the recipe's seed: every run sees
   the same prompts and is scored on the same evaluation problems. A finished run (with its
   `ablate.json`) is skipped; a run that was cut off resumes from its last checkpoint.
4. Diagnostics of each final policy (docs/ablation.md explains how to read them): accuracy
   with the gate closed and with shuffled thoughts, gate and gradient norms from
   metrics.jsonl, thought statistics from neuralese.inspector, and the bytes autograd saves for one
   micro-batch's recompute.
5. OUT/table.md, OUT/accuracy.png and OUT/results.json (every run's numbers).

Torch runs on `--threads` threads in every process, one process at a time, so the arms'
step times are taken in the same conditions.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from ablate_report import aggregate, plot, write_table  # noqa: E402  (this folder is on sys.path)

from neuralese.config import RunConfig, load_config  # noqa: E402  (light: no torch)
from neuralese.runlog import RunLog  # noqa: E402

DIAG_PROMPTS = 16  # evaluation prompts the thought statistics are averaged over
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


def builtin_arms() -> dict[str, Arm]:
    windows = {"latent-w0": ("latent", 0), "latent-w2": ("latent", 2), "latent-full": ("latent", "full"),
               "hybrid-w0": ("hybrid", 0), "hybrid-w4": ("hybrid", 4)}  # fmt: skip
    arms = {"token": Arm("token", ["neuralese.mode=off", "neuralese.tbptt_window=0"])}
    for name, (mode, window) in windows.items():
        arms[name] = Arm(name, [f"neuralese.mode={mode}", f"neuralese.tbptt_window={window}"], controls=("shuffled",))
    return arms


def load_spec(path: str | None) -> tuple[dict[str, list[str]], dict[str, Arm]]:
    """Stage-0 variants and arms from a spec file (module docstring), or the built-ins."""
    if path is None:
        return {"default": []}, builtin_arms()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        sys.exit(f"ablate: --spec {path}: cannot read it as YAML: {e}")
    if not isinstance(data, dict) or set(data) - {"stage0", "arms"} or not isinstance(data.get("arms"), dict):
        sys.exit(f"ablate: --spec {path}: expected a mapping with `arms` (and optional `stage0`)")
    stage0 = {"default": [], **{k: _strings(v, path, f"stage0.{k}") for k, v in (data.get("stage0") or {}).items()}}
    arms = {}
    for name, a in data["arms"].items():
        if not isinstance(a, dict) or set(a) - {"stage0", "set", "controls"}:
            sys.exit(f"ablate: --spec {path}: arms.{name} must be a mapping of stage0, set, controls")
        controls = tuple(_strings(a.get("controls", []), path, f"arms.{name}.controls"))
        bad = [c for c in controls if c not in CONTROLS] + ([a.get("stage0")] if a.get("stage0", "default") not in stage0 else [])
        if bad:
            sys.exit(f"ablate: --spec {path}: arms.{name}: unknown {bad}; controls are {CONTROLS}, "
                     f"stage0 variants {list(stage0)}")  # fmt: skip
        arms[name] = Arm(name, _strings(a.get("set", []), path, f"arms.{name}.set"), a.get("stage0", "default"), controls)
    return stage0, arms


def _strings(value, path: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        sys.exit(f"ablate: --spec {path}: {key} must be a list of strings, got {value!r}")
    return value


def with_controls(arms: dict[str, Arm]) -> dict[str, Arm]:
    """The arms followed by their pause twins."""
    out = dict(arms)
    for arm in arms.values():
        if "pause" in arm.controls:
            name = f"{arm.name}+pause"
            out[name] = Arm(name, [*arm.sets, *PAUSE_SETS], arm.stage0, (), control_of=arm.name)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", help="YAML recipe (recipes/ablate_*.yaml)")
    p.add_argument("--seeds", type=int, default=3, help="RL seeds per arm")
    p.add_argument("--steps", type=int, help="RL steps per run (default: the recipe's rl.steps)")
    p.add_argument("--out", help="ablation folder (default: the recipe's output_dir + '/ablate')")
    p.add_argument("--spec", help="YAML file of stage-0 variants and arms (default: the built-in arms)")
    p.add_argument("--arms", help="comma-separated arms to run (default: every arm of the spec)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--threads", type=int, default=1, help="torch threads in every process")
    p.add_argument("--check", action="store_true", help="only check that every arm's recipe resolves, then stop")
    args = p.parse_args(argv)
    args.stage0, spec_arms = load_spec(args.spec)
    chosen = list(spec_arms) if args.arms is None else list(dict.fromkeys(a.strip() for a in args.arms.split(",") if a.strip()))
    unknown = [a for a in chosen if a not in spec_arms]
    if unknown or not chosen:
        p.error(f"--arms: unknown {unknown or 'none given'}; choose from {', '.join(spec_arms)}")
    args.arms = with_controls({a: spec_arms[a] for a in chosen})
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.steps is not None:
        args.set.append(f"rl.steps={args.steps}")
    return args


# ----------------------------------------------------------------------------- processes


def child_env(threads: int) -> dict[str, str]:
    """The environment of every child: its thread count fixed (oversubscription costs 10-50x on a
    busy machine), this checkout importable, nothing fetched from the network."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))  # fmt: skip
    return env


def run_child(cli_args: list[str], log: Path, threads: int) -> tuple[float, float | None]:
    """`neuralese CLI_ARGS` in a fresh process, output to `log`; (wall seconds, its peak RSS in MiB)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak_file = log.with_suffix(".peak")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(peak_file), *cli_args]
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env(threads), cwd=ROOT)
    wall = time.perf_counter() - start
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        sys.exit(f"ablate: neuralese {' '.join(cli_args[:2])} failed (exit {code}); log {log}:\n{tail}")
    return wall, json.loads(peak_file.read_text())


def child_main(argv: list[str]) -> int:
    """`ablate.py --child PEAK_FILE ARGS...` runs `neuralese ARGS...` and writes its peak RSS (MiB).

    Not wait4's ru_maxrss: Linux carries the RSS high-water mark of the image before exec (the
    parent's, torch and all) into the child's. VmHWM is the new address space's own."""
    peak_file = Path(argv[0])

    def write_peak() -> None:
        status = Path("/proc/self/status")  # Linux; elsewhere the table shows no peak RSS
        lines = status.read_text().splitlines() if status.is_file() else []
        kib = [int(ln.split()[1]) for ln in lines if ln.startswith("VmHWM:")]
        peak_file.write_text(json.dumps(kib[0] / 1024 if kib else None))

    atexit.register(write_peak)
    from neuralese.cli import main as cli_main

    return cli_main(argv[1:])


def metrics_rows(run: Path) -> list[dict]:
    return RunLog(run).read_metrics()


def training_done(run: Path, steps: int) -> bool:
    """The run's last metrics row is its final evaluation (eval keys only) at the last step."""
    rows = metrics_rows(run)
    return bool(rows) and rows[-1]["step"] == steps and "reward/mean" not in rows[-1]


# ----------------------------------------------------------------------------- stage 0 and switch-on


def as_is_path(args, cfg: RunConfig, out: Path, variant: str) -> Path:
    if variant == "default":
        return Path(cfg.model.path) if cfg.model.path else out / "as-is"
    return out / f"as-is-{variant}"


def ensure_as_is(args, out: Path) -> dict[str, Path]:
    """The as-is model of every stage-0 variant the arms use: trained here unless it exists."""
    paths = {}
    for variant in dict.fromkeys(a.stage0 for a in args.arms.values()):
        cfg = load_config(args.recipe, [*args.set, *args.stage0[variant]])
        path = as_is_path(args, cfg, out, variant)
        paths[variant] = path
        if (path / "config.json").is_file():
            print(f"ablate: stage 0 ({variant}): using {path}", flush=True)
            continue
        if cfg.model.tiny is None:
            sys.exit(f"ablate: {path} holds no model and the recipe has no model.tiny to train one")
        print(f"ablate: stage 0 ({variant}): training the as-is model into {path}", flush=True)
        sets = [*args.set, *args.stage0[variant], f"pretrain.output_dir={path}"]
        wall, _ = run_child(["pretrain", str(Path(args.recipe).resolve()), *[x for s in sets for x in ("--set", s)]],
                            out / "logs" / f"stage0-{variant}.log", args.threads)  # fmt: skip
        record = out / "stage0.json"
        done = json.loads(record.read_text()) if record.is_file() else {}
        done[variant] = {"model": str(path), "wall_s": wall, "overrides": args.stage0[variant]}
        record.write_text(json.dumps(done, indent=2))
    return paths


def as_is_plain(args, as_is: dict[str, Path], out: Path) -> dict[str, dict]:
    """Greedy accuracy of each as-is model on the plain prompt (no thoughts), within the longest answer
    budget of its arms. Cached in OUT/as-is.json."""
    cache = out / "as-is.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    from neuralese.config import NeuraleseConfig
    from neuralese.policy import NeuralesePolicy

    result = {}
    for variant, path in as_is.items():
        # The longest answer budget of the arms that start from it: a chain must fit to be scored.
        budget = max(load_config(args.recipe, [*args.set, *a.sets]).eval.max_new_tokens
                     for a in args.arms.values() if a.stage0 == variant)  # fmt: skip
        if known.get(variant, {}).get("model") != str(path) or known[variant].get("max_new_tokens") != budget:
            cfg = load_config(args.recipe, [*args.set, f"eval.max_new_tokens={budget}"])
            policy = NeuralesePolicy.from_pretrained(path, config=NeuraleseConfig(mode="off"))
            known[variant] = {"model": str(path), "max_new_tokens": budget, **evaluate_policy(policy, cfg)}
        result[variant] = known[variant]
    cache.write_text(json.dumps(known, indent=2))
    return result


def switch_on(args, arm: Arm, cfg: RunConfig, out: Path) -> float:
    """Greedy accuracy of the arm's policy before any RL step (its curriculum's first stage). Cached."""
    cache = out / "switch_on.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    key = json.dumps([cfg.model.path, arm.sets, args.set])
    if key not in known:
        known[key] = {"arm": arm.name, **evaluate_policy(step0_policy(cfg), cfg)}
        cache.write_text(json.dumps(known, indent=2))
    return known[key]["accuracy"]


def step0_policy(cfg: RunConfig):
    """The policy `neuralese train` starts from: with its curriculum's first stage of thoughts."""
    from neuralese.build import build_policy
    from neuralese.curriculum import Curriculum

    policy = build_policy(cfg, "cpu")
    curriculum = Curriculum(cfg.curriculum)
    if curriculum.enabled:
        policy.config.num_thoughts = curriculum.num_thoughts
    return policy


def evaluate_policy(policy, cfg: RunConfig, thoughts: str = "own") -> dict:
    """What `neuralese eval` prints, on the problems every run of the ablation is scored on."""
    from neuralese.envs import make_env
    from neuralese.evaluate import evaluate

    e = cfg.eval
    env = make_env(cfg.env.name, cfg.env.args)
    return evaluate(policy.eval(), env, cfg.env.test_split, e.n, cfg.seed, e.batch_size, e.max_new_tokens,
                    env_name=cfg.env.name, progress=False, thoughts=thoughts)  # fmt: skip


# ----------------------------------------------------------------------------- one run


def run_arm(args, arm: Arm, seed: int, as_is: Path, out: Path) -> dict:
    """Train one arm x seed in its own process (or skip a finished one); its numbers and diagnostics."""
    run = out / "runs" / f"{arm.name}-s{seed}"
    done_file = run / "ablate.json"
    if done_file.is_file():
        return {**json.loads(done_file.read_text()), "skipped": True}
    base = load_config(args.recipe, args.set)
    sets = [*args.set, f"model.path={as_is}", *arm.sets, f"seed={seed}", f"data_seed={base.seed}"]
    cfg = load_config(args.recipe, sets)
    start = switch_on(args, arm, cfg, out)
    wall, rss = 0.0, None
    if not training_done(run, cfg.rl.steps):
        cli = ["train", str(Path(args.recipe).resolve()), "--out", str(run)]
        cli += [x for s in sets for x in ("--set", s)]
        if (run / "metrics.jsonl").is_file():
            cli.append("--resume")  # cut off earlier: the peak RSS is then the resumed part's
        wall, rss = run_child(cli, out / "logs" / f"{arm.name}-s{seed}.log", args.threads)
    result = {"arm": arm.name, "seed": seed, "wall_s": wall, "peak_rss_mib": rss, "switch_on": start,
              **summarize(metrics_rows(run))}  # fmt: skip
    if cfg.neuralese.mode == "off":
        result["latent_grad_norm"] = None  # the trainer logs 0 for it: there is no latent path at all
    result.update(diagnose(run, cfg, arm))
    done_file.write_text(json.dumps(result, indent=2))
    return result


def summarize(rows: list[dict]) -> dict:
    """Final accuracy, curves, step time and the feedback metrics of one run's metrics.jsonl."""
    steps = [r for r in rows if "reward/mean" in r]
    final = rows[-1]
    step_s = [r["time/rollout_s"] + r["time/reward_s"] + r["time/update_s"] for r in steps]
    late = steps[len(steps) // 2 :]  # the second half: where the run has settled

    def mean_of(key: str, among: list[dict]) -> float | None:
        values = [r[key] for r in among if isinstance(r.get(key), (int, float))]
        return statistics.fmean(values) if values else None

    return {
        "accuracy": final["eval/accuracy"],
        "positions": final["eval/mean_generated_positions"],
        "eval_n": final["eval/n"],
        "step_s": statistics.median(step_s),
        "eval_curve": sorted({r["step"]: r["eval/accuracy"] for r in rows if "eval/accuracy" in r}.items()),
        "train_curve": [[r["step"], r["accuracy"]] for r in steps],
        "gate": steps[-1].get("feedback/gate_mean_abs"),
        "latent_grad_norm": mean_of("feedback/latent_grad_norm", late),
        "grad_norm": mean_of("grad_norm", late),
        "vector_norm": mean_of("feedback/vector_norm", late),
    }


# ----------------------------------------------------------------------------- diagnostics


def diagnose(run: Path, cfg: RunConfig, arm: Arm) -> dict:
    """What explains the outcome: does the thought matter (accuracy with the gate closed, with another
    prompt's thoughts), is it loud next to the token, does it vary along the chain and across prompts,
    and what it costs."""
    import torch

    from neuralese.load import load_policy

    policy = load_policy(run)
    if cfg.neuralese.mode == "off":
        return {"saved_mib": saved_mib(policy, cfg)}
    out = {}
    if "shuffled" in arm.controls:
        out["accuracy_shuffled"] = evaluate_policy(policy, cfg, thoughts="shuffled")["accuracy"]
    if cfg.neuralese.input == "gated_sum":  # a latent_only input has no gate to close
        gate_logit = policy.adapter.gate_logit
        kept = gate_logit.detach().clone()
        with torch.no_grad():
            gate_logit.zero_()  # tanh(0) = 0: the thought positions stay, their content is gone
        out["accuracy_gate_closed"] = evaluate_policy(policy, cfg)["accuracy"]
        with torch.no_grad():
            gate_logit.copy_(kept)
    return {**out, **thought_stats(policy, cfg), "saved_mib": saved_mib(policy, cfg)}


def thought_stats(policy, cfg: RunConfig) -> dict:
    """Thought statistics of greedy answers to DIAG_PROMPTS evaluation prompts: neuralese.inspector's
    cosine to the previous thought and |g*f|/|e| (and the means of the mode's own columns, with the
    mode's weight statistics: channel mode's retention), and the cosine between the same thought of different prompts (a thought that is the same for every input
    carries nothing)."""
    import torch
    import torch.nn.functional as F

    from neuralese.envs import load_split, make_env
    from neuralese.inspector import inspect_thoughts

    env = make_env(cfg.env.name, cfg.env.args)
    prompts = list(load_split(env, cfg.env.test_split, DIAG_PROMPTS, cfg.seed, cfg.env.name)["prompt"])
    consecutive, loudness, columns = [], [], {}
    for prompt in prompts:
        for th in inspect_thoughts(policy, prompt, cfg.eval.max_new_tokens).thoughts:
            loudness.append(th.thought_to_token)
            if th.cosine_prev is not None:
                consecutive.append(th.cosine_prev)
            for name, value in th.columns.items():  # the mode's own (channel |s| and kept, refine Δpass)
                if value is not None:
                    columns.setdefault(name, []).append(value)
    ids, mask = policy.encode(prompts)
    with torch.no_grad():
        ro = policy.rollout(ids, mask, cfg.eval.max_new_tokens, 0.0)
    chains = [F.normalize(ro.feedback[b][ro.feedback_mask[b]], dim=-1) for b in range(len(prompts))]
    depth = min(len(c) for c in chains)
    across = None
    if depth and len(chains) > 1:
        units = torch.stack([c[:depth] for c in chains], dim=1)  # [depth, N, D]
        sims = units @ units.transpose(1, 2)  # [depth, N, N]
        n = sims.shape[-1]
        across = float((sims.sum((1, 2)) - sims.diagonal(dim1=1, dim2=2).sum(-1)).mean() / (n * (n - 1)))
    mean = lambda xs: statistics.fmean(xs) if xs else None  # noqa: E731
    return {
        "cos_consecutive": mean(consecutive),
        "cos_across_prompts": across,
        "thought_to_token": mean(loudness),
        "mode_columns": {**{name: mean(values) for name, values in columns.items()}, **policy.mode.weight_stats(policy)},
    }


def saved_mib(policy, cfg: RunConfig) -> float:
    """MiB autograd saves for one micro-batch's log-prob recompute, every sequence at full length
    (ignore_eos) so that arms differ only in mode and window: the memory the window changes.
    On CUDA, the allocator's peak over the recompute and backward instead."""
    import torch
    from bench_rollout import recompute_memory  # scripts/ is on sys.path: this file's own folder

    from neuralese.envs import load_split, make_env

    rl = cfg.rl
    n = min(rl.micro_batch_per_device, rl.prompts_per_step * rl.samples_per_prompt)
    env = make_env(cfg.env.name, cfg.env.args)
    rows = load_split(env, "train", math.ceil(n / rl.samples_per_prompt), cfg.seed, cfg.env.name)
    prompts = [p for p in rows["prompt"] for _ in range(rl.samples_per_prompt)][:n]
    ids, mask = policy.encode(prompts)
    generator = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    ro = policy.rollout(ids, mask, rl.max_new_tokens, rl.temperature, generator, ignore_eos=True)
    return recompute_memory(policy.train(), ro, cfg.neuralese.tbptt_window) / 2**20


# ----------------------------------------------------------------------------- main


def check(args) -> None:
    """Resolve every stage-0 variant and arm against the recipe (the errors `neuralese` would give)."""
    for sets in args.stage0.values():
        load_config(args.recipe, [*args.set, *sets])
    for arm in args.arms.values():
        cfg = load_config(args.recipe, [*args.set, *arm.sets])
        nz = cfg.neuralese
        what = "token" if nz.mode == "off" else f"{nz.mode}, {nz.space}, {nz.input}"
        stages = f", curriculum {cfg.curriculum.stages} stages" if cfg.curriculum.stages else ""
        print(f"ablate: {arm.name}: stage 0 {arm.stage0!r}, {what}{stages}, answer budget {cfg.rl.max_new_tokens}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.check:
        check(args)
        return
    cfg = load_config(args.recipe, args.set)
    out = Path(args.out or Path(cfg.output_dir) / "ablate")
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    as_is = ensure_as_is(args, out)
    plain = as_is_plain(args, as_is, out)
    for variant, b in plain.items():
        print(f"ablate: as-is ({variant}) accuracy {b['accuracy']:.3f} on the plain prompt", flush=True)
    jobs = [(arm, seed) for arm in args.arms.values() for seed in range(cfg.seed, cfg.seed + args.seeds)]
    runs = []
    for i, (arm, seed) in enumerate(jobs, 1):
        r = run_arm(args, arm, seed, as_is[arm.stage0], out)
        runs.append(r)
        how = (
            "done earlier"
            if r.get("skipped")
            else f"{r['wall_s']:.0f} s, peak RSS {r['peak_rss_mib'] or 0:.0f} MiB"
        )
        print(f"ablate: [{i}/{len(jobs)}] {arm.name} seed {seed}: accuracy {r['accuracy']:.3f} "
              f"(switch-on {r['switch_on']:.3f}, {r['positions']:.1f} positions), {r['step_s']:.2f} s/step, {how}",
              flush=True)  # fmt: skip
    rows = aggregate(runs, args.arms)
    write_table(out / "table.md", cfg, rows, plain, args)
    plot(out / "accuracy.png", runs, rows, f"{args.recipe}: {args.seeds} seed(s) x {cfg.rl.steps} steps")
    results = {"recipe": args.recipe, "spec": args.spec, "overrides": args.set, "threads": args.threads,
               "as_is": plain, "arms": rows, "runs": runs}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"ablate: wrote {out / 'table.md'}, {out / 'accuracy.png'}, {out / 'results.json'}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child_main(sys.argv[2:]))
    main()
