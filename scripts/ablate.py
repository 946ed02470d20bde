"""Ablation: does neuralese RL beat token RL on a task? One command, one table and one plot.

    python scripts/ablate.py recipes/ablate_multiplication.yaml --seeds 3
    python scripts/ablate.py RECIPE --seeds 3 [--steps N] [--out DIR] [--arms token,latent-w2 ...]
                             [--set key=value ...] [--threads 1]

Every arm starts from the same as-is checkpoint and runs the same number of RL steps on the
same prompts (the recipe's RL settings; only the neuralese mode and TBPTT window change):

    token        neuralese.mode off: token-only GRPO on the plain prompt
    latent-w0    latent mode, `neuralese.num_thoughts` thoughts, window 0 (recorded thoughts)
    latent-w2    latent mode, window 2
    latent-full  latent mode, window full (exact BPTT through every thought)
    hybrid-w0    hybrid mode (a thought beside every written token), window 0
    hybrid-w4    hybrid mode, window 4

Steps:

1. Stage 0 once: the recipe's `model.path` is used if it holds a model, else `neuralese
   pretrain` writes it there. The ablation recipes train it on both formats the arms start
   from (`pretrain.thought_tokens_max: K`; docs/ablation.md says why).
2. The as-is model is scored in the plain format and with K thought tokens at a closed gate:
   step 0 of every curve and the baseline of the table.
3. Each arm x seed is its own `python -m rl.cli train` process, so its peak RSS is its own,
   with `seed` = the RL seed (sampling) and `data_seed` = the recipe's seed: every run sees
   the same prompts and is scored on the same evaluation problems. A finished run (with its
   `ablate.json`) is skipped; a run that was cut off resumes from its last checkpoint.
4. Diagnostics of each final policy (docs/ablation.md explains how to read them): accuracy
   with the gate closed, gate and gradient norms from metrics.jsonl, thought statistics
   from rl.inspector, and the bytes autograd saves for one micro-batch's recompute.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rl.config import RunConfig, load_config  # noqa: E402  (light: no torch)
from rl.runlog import RunLog  # noqa: E402

ARMS: dict[str, tuple[str, int | str]] = {
    "token": ("off", 0),
    "latent-w0": ("latent", 0),
    "latent-w2": ("latent", 2),
    "latent-full": ("latent", "full"),
    "hybrid-w0": ("hybrid", 0),
    "hybrid-w4": ("hybrid", 4),
}
# Every number of a run that the table averages over seeds (None where it does not apply).
NUMBERS = ("accuracy", "positions", "step_s", "wall_s", "peak_rss_mib", "saved_mib", "gate", "latent_grad_norm",
           "grad_norm", "vector_norm", "accuracy_gate_closed", "cos_consecutive", "cos_across_prompts",
           "thought_to_token")  # fmt: skip
DIAG_PROMPTS = 16  # evaluation prompts the thought statistics are averaged over


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", help="YAML recipe (recipes/ablate_*.yaml)")
    p.add_argument("--seeds", type=int, default=3, help="RL seeds per arm")
    p.add_argument("--steps", type=int, help="RL steps per run (default: the recipe's rl.steps)")
    p.add_argument("--out", help="ablation folder (default: the recipe's output_dir + '/ablate')")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--threads", type=int, default=1, help="torch threads in every process")
    args = p.parse_args(argv)
    args.arms = list(dict.fromkeys(a.strip() for a in args.arms.split(",") if a.strip()))
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown or not args.arms:
        p.error(f"--arms: unknown {unknown or 'none given'}; choose from {', '.join(ARMS)}")
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
    from rl.cli import main as cli_main

    return cli_main(argv[1:])


def arm_overrides(arm: str, seed: int, data_seed: int, as_is: Path) -> list[str]:
    mode, window = ARMS[arm]
    return [f"model.path={as_is}", f"neuralese.mode={mode}", f"neuralese.tbptt_window={window}",
            f"seed={seed}", f"data_seed={data_seed}"]  # fmt: skip


def metrics_rows(run: Path) -> list[dict]:
    return RunLog(run).read_metrics()


def training_done(run: Path, steps: int) -> bool:
    """The run's last metrics row is its final evaluation (eval keys only) at the last step."""
    rows = metrics_rows(run)
    return bool(rows) and rows[-1]["step"] == steps and "reward/mean" not in rows[-1]


# ----------------------------------------------------------------------------- stage 0 and baseline


def ensure_as_is(args, cfg: RunConfig, out: Path) -> Path:
    """The as-is model: the recipe's model.path if it holds one, else stage 0 writes it."""
    path = Path(cfg.model.path) if cfg.model.path else out / "as-is"
    if (path / "config.json").is_file():
        print(f"ablate: stage 0: using {path}", flush=True)
        return path
    if cfg.model.tiny is None:
        sys.exit(f"ablate: {path} holds no model and the recipe has no model.tiny to train one")
    print(f"ablate: stage 0: training the as-is model into {path}", flush=True)
    from rl.pretrain import pretrain

    cfg.pretrain.output_dir = str(path)
    start = time.perf_counter()
    pretrain(cfg)
    (out / "stage0.json").write_text(json.dumps({"model": str(path), "wall_s": time.perf_counter() - start}))
    return path


def as_is_baseline(cfg: RunConfig, as_is: Path, out: Path) -> dict:
    """Greedy accuracy of the as-is model, plain and with K thought tokens (gate closed: exactly
    the latent arms at step 0). Cached in OUT/as-is.json."""
    cache = out / "as-is.json"
    if cache.is_file() and json.loads(cache.read_text()).get("model") == str(as_is):
        return json.loads(cache.read_text())
    from rl.config import NeuraleseConfig
    from rl.policy import NeuralesePolicy

    result = {"model": str(as_is)}
    for name, mode in (("plain", "off"), ("thoughts", "latent")):
        nz = NeuraleseConfig(mode=mode, num_thoughts=cfg.neuralese.num_thoughts)
        result[name] = evaluate_policy(NeuralesePolicy.from_pretrained(as_is, config=nz), cfg)
    cache.write_text(json.dumps(result, indent=2))
    return result


def evaluate_policy(policy, cfg: RunConfig) -> dict:
    """What `neuralese eval` prints, on the problems every run of the ablation is scored on."""
    from envs import make_env
    from rl.evaluate import evaluate

    e = cfg.eval
    env = make_env(cfg.env.name, cfg.env.args)
    return evaluate(policy.eval(), env, cfg.env.test_split, e.n, cfg.seed, e.batch_size, e.max_new_tokens,
                    env_name=cfg.env.name, progress=False)  # fmt: skip


# ----------------------------------------------------------------------------- one run


def run_arm(args, cfg: RunConfig, arm: str, seed: int, as_is: Path, out: Path) -> dict:
    """Train one arm x seed in its own process (or skip a finished one); its numbers and diagnostics."""
    run = out / "runs" / f"{arm}-s{seed}"
    done_file = run / "ablate.json"
    if done_file.is_file():
        return {**json.loads(done_file.read_text()), "skipped": True}
    sets = [*args.set, *arm_overrides(arm, seed, cfg.seed, as_is)]
    wall, rss = 0.0, None
    if not training_done(run, cfg.rl.steps):
        cli = ["train", str(Path(args.recipe).resolve()), "--out", str(run)]
        cli += [x for s in sets for x in ("--set", s)]
        if (run / "metrics.jsonl").is_file():
            cli.append("--resume")  # cut off earlier: the peak RSS is then the resumed part's
        wall, rss = run_child(cli, out / "logs" / f"{arm}-s{seed}.log", args.threads)
    result = {"arm": arm, "seed": seed, "wall_s": wall, "peak_rss_mib": rss, **summarize(metrics_rows(run))}
    if ARMS[arm][0] == "off":
        result["latent_grad_norm"] = None  # the trainer logs 0 for it: there is no latent path at all
    result.update(diagnose(run, load_config(args.recipe, sets)))
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


def diagnose(run: Path, cfg: RunConfig) -> dict:
    """What explains the outcome: does the thought matter (accuracy with the gate closed), is it
    loud next to the token, does it vary along the chain and across prompts, and what it costs."""
    import torch

    from rl.export import load_policy

    policy = load_policy(run)
    if cfg.neuralese.mode == "off":
        return {"saved_mib": saved_mib(policy, cfg)}
    gate_logit = policy.adapter.gate_logit
    kept = gate_logit.detach().clone()
    with torch.no_grad():
        gate_logit.zero_()  # tanh(0) = 0: the thought positions stay, their content is gone
    closed = evaluate_policy(policy, cfg)["accuracy"]
    with torch.no_grad():
        gate_logit.copy_(kept)
    return {"accuracy_gate_closed": closed, **thought_stats(policy, cfg), "saved_mib": saved_mib(policy, cfg)}


def thought_stats(policy, cfg: RunConfig) -> dict:
    """Thought statistics of greedy answers to DIAG_PROMPTS evaluation prompts: rl.inspector's
    cosine to the previous thought and |g*f|/|e|, and the cosine between the same thought of
    different prompts (a thought that is the same for every input carries nothing)."""
    import torch
    import torch.nn.functional as F

    from envs import load_split, make_env
    from rl.inspector import inspect_thoughts
    from rl.rollout import generate_rollout

    env = make_env(cfg.env.name, cfg.env.args)
    prompts = list(load_split(env, cfg.env.test_split, DIAG_PROMPTS, cfg.seed, cfg.env.name)["prompt"])
    consecutive, loudness = [], []
    for prompt in prompts:
        for th in inspect_thoughts(policy, prompt, cfg.eval.max_new_tokens).thoughts:
            loudness.append(th.thought_to_token)
            if th.cosine_prev is not None:
                consecutive.append(th.cosine_prev)
    ids, mask = policy.encode(prompts)
    with torch.no_grad():
        ro = generate_rollout(policy, ids, mask, cfg.eval.max_new_tokens, 0.0)
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
    }


def saved_mib(policy, cfg: RunConfig) -> float:
    """MiB autograd saves for one micro-batch's log-prob recompute, every sequence at full length
    (ignore_eos) so that arms differ only in mode and window: the memory the window changes.
    On CUDA, the allocator's peak over the recompute and backward instead."""
    import torch
    from bench_rollout import recompute_memory  # scripts/ is on sys.path: this file's own folder

    from envs import load_split, make_env
    from rl.rollout import generate_rollout

    rl = cfg.rl
    n = min(rl.micro_batch_per_device, rl.prompts_per_step * rl.samples_per_prompt)
    env = make_env(cfg.env.name, cfg.env.args)
    rows = load_split(env, "train", math.ceil(n / rl.samples_per_prompt), cfg.seed, cfg.env.name)
    prompts = [p for p in rows["prompt"] for _ in range(rl.samples_per_prompt)][:n]
    ids, mask = policy.encode(prompts)
    generator = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    ro = generate_rollout(policy, ids, mask, rl.max_new_tokens, rl.temperature, generator, ignore_eos=True)
    return recompute_memory(policy.train(), ro, cfg.neuralese.tbptt_window) / 2**20


# ----------------------------------------------------------------------------- table and plot


def mean_std(values: list) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value) of the numbers among `values`."""
    xs = [v for v in values if isinstance(v, (int, float))]
    if not xs:
        return None, None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def aggregate(runs: list[dict], baseline: dict) -> dict[str, dict]:
    """Per arm: mean and std over seeds of every number, and the as-is accuracy it started from."""
    arms: dict[str, dict] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        start = baseline["thoughts" if ARMS[arm][0] == "latent" else "plain"]["accuracy"]
        row = {"arm": arm, "mode": ARMS[arm][0], "window": ARMS[arm][1], "seeds": len(mine),
               "as_is_accuracy": start}  # fmt: skip
        for key in NUMBERS:
            row[key], row[f"{key}_std"] = mean_std([r.get(key) for r in mine])
        arms[arm] = row
    return arms


def fmt(value, spec: str = ".3f", std=None) -> str:
    if value is None:
        return "—"
    text = format(value, spec)
    return text if std is None else f"{text} ± {format(std, spec)}"


def write_table(path: Path, cfg: RunConfig, arms: dict[str, dict], baseline: dict, args) -> None:
    rl, n_seeds = cfg.rl, args.seeds
    lines = [
        f"# Ablation: `{args.recipe}` (env `{cfg.env.name}` {cfg.env.args or ''})",
        "",
        f"{n_seeds} seed(s) x {rl.steps} RL steps ({rl.algorithm}, {rl.prompts_per_step} prompts x "
        f"{rl.samples_per_prompt} samples per step, lr {rl.learning_rate:g}, feedback lr "
        f"{rl.feedback_learning_rate or rl.learning_rate:g}), {cfg.neuralese.num_thoughts} thoughts in latent mode; "
        f"every arm from `{baseline['model']}`. Accuracy: greedy, on {cfg.eval.n} problems of the "
        f"`{cfg.env.test_split}` split, mean ± sample std over seeds; Δ: against the as-is model in the arm's "
        f"own format. s/step: median wall seconds of rollout + reward + update, torch on {args.threads} "
        "thread(s), one process at a time. Peak RSS: the training process's own high-water mark (`VmHWM`, "
        "the whole process: Python, torch, data). Saved MiB: bytes autograd saves for one micro-batch's recompute at full length.",
        "",
        "| arm | accuracy | Δ vs as-is | positions / answer | s / step | peak RSS MiB | saved MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    k = cfg.neuralese.num_thoughts
    for name, key in (("as-is, plain prompt", "plain"), (f"as-is, {k} thought tokens", "thoughts")):
        b = baseline[key]
        lines.append(f"| {name} | {b['accuracy']:.3f} | | {b['mean_generated_positions']:.1f} | | | |")
    for a in arms.values():
        delta = None if a["accuracy"] is None else a["accuracy"] - a["as_is_accuracy"]
        lines.append(
            f"| {a['arm']} | {fmt(a['accuracy'], std=a['accuracy_std'])} | {fmt(delta, '+.3f')} | "
            f"{fmt(a['positions'], '.1f')} | {fmt(a['step_s'], '.2f')} | {fmt(a['peak_rss_mib'], '.0f')} | "
            f"{fmt(a['saved_mib'], '.1f')} |"
        )
    lines += [
        "",
        "Diagnostics (final policies, mean over seeds; docs/ablation.md explains them): gate = mean |tanh λ|; "
        "|g·f|/|e| = gated thought against the token embedding; latent grad = gradient norm on the latent path "
        "and grad = total gradient norm before clipping (means over the second half of the steps); cos prev = "
        "cosine of consecutive thoughts; cos across = cosine of the same thought for different prompts; "
        "gate closed = accuracy of the trained policy with tanh λ set to 0.",
        "",
        "| arm | gate | abs(g·f)/abs(e) | latent grad | grad | cos prev | cos across | accuracy, gate closed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in arms.values():
        lines.append(
            f"| {a['arm']} | {fmt(a['gate'], '.4f')} | {fmt(a.get('thought_to_token'), '.4f')} | "
            f"{fmt(a['latent_grad_norm'], '.2e')} | {fmt(a['grad_norm'], '.2e')} | {fmt(a.get('cos_consecutive'))} | "
            f"{fmt(a.get('cos_across_prompts'))} | {fmt(a.get('accuracy_gate_closed'))} |"
        )
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, runs: list[dict], arms: dict[str, dict], title: str) -> None:
    """Greedy evaluation accuracy over steps (mean ± std over seeds, step 0 = as-is) and the
    training samples' accuracy (moving average over 10 steps), one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_eval, ax_train) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (arm, a) in enumerate(arms.items()):
        colour = "black" if arm == "token" else f"C{i}"
        mine = [r for r in runs if r["arm"] == arm]
        curves = [dict([(0, a["as_is_accuracy"])] + [tuple(p) for p in r["eval_curve"]]) for r in mine]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        ys = np.array([[c[s] for s in steps] for c in curves])  # [seeds, points]
        ax_eval.plot(steps, ys.mean(0), "o-", color=colour, label=arm, lw=2 if arm == "token" else 1.3, ms=3)
        ax_eval.fill_between(steps, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), color=colour, alpha=0.12)
        train = np.array([[acc for _, acc in r["train_curve"]] for r in mine])  # [seeds, steps]
        width = min(10, train.shape[1])
        smooth = np.convolve(train.mean(0), np.ones(width) / width, mode="valid")
        ax_train.plot(np.arange(width, train.shape[1] + 1), smooth, color=colour, label=arm)
    ax_eval.set(title="greedy accuracy, evaluation split", xlabel="RL step", ylabel="accuracy")
    ax_train.set(title=f"sampled accuracy, training prompts (moving mean of {width})", xlabel="RL step")
    for ax in (ax_eval, ax_train):
        ax.grid(alpha=0.3)
    ax_eval.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.recipe, args.set)
    out = Path(args.out or Path(cfg.output_dir) / "ablate")
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    as_is = ensure_as_is(args, cfg, out)
    baseline = as_is_baseline(cfg, as_is, out)
    print(f"ablate: as-is accuracy {baseline['plain']['accuracy']:.3f} plain, "
          f"{baseline['thoughts']['accuracy']:.3f} with {cfg.neuralese.num_thoughts} thought tokens", flush=True)  # fmt: skip
    jobs = [(arm, seed) for arm in args.arms for seed in range(cfg.seed, cfg.seed + args.seeds)]
    runs = []
    for i, (arm, seed) in enumerate(jobs, 1):
        r = run_arm(args, cfg, arm, seed, as_is, out)
        runs.append(r)
        how = (
            "done earlier"
            if r.get("skipped")
            else f"{r['wall_s']:.0f} s, peak RSS {fmt(r['peak_rss_mib'], '.0f')} MiB"
        )
        print(f"ablate: [{i}/{len(jobs)}] {arm} seed {seed}: accuracy {r['accuracy']:.3f} "
              f"({r['positions']:.1f} positions), {r['step_s']:.2f} s/step, {how}", flush=True)  # fmt: skip
    arms = aggregate(runs, baseline)
    write_table(out / "table.md", cfg, arms, baseline, args)
    plot(out / "accuracy.png", runs, arms, f"{args.recipe}: {args.seeds} seed(s) x {cfg.rl.steps} steps")
    results = {"recipe": args.recipe, "overrides": args.set, "threads": args.threads, "as_is": baseline,
               "arms": arms, "runs": runs}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"ablate: wrote {out / 'table.md'}, {out / 'accuracy.png'}, {out / 'results.json'}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child_main(sys.argv[2:]))
    main()
