"""Rollout throughput and latent-chain memory, measured against Hugging Face `generate` in the same run.

    .venv/bin/python -m bench.bench_rollout                   # tiny model on CPU, 32 prompts x 64 positions
    .venv/bin/python -m bench.bench_rollout --device cuda --hidden 512 --layers 8
    .venv/bin/python -m bench.bench_rollout --model PATH      # any local causal LM folder

Throughput: HF `generate` (sampling, KV cache, no early stop) in tokens/s, and our latent
and hybrid rollouts in positions/s (a thought position costs one forward step like a
token), on the same model and batch. Printed as ratios to HF: the goal is >= 0.9.

The other modes, on the same batch and as ratios to their sequential peer: `channel` (a state beside
every position) to hybrid; `refine` (the thoughts in `--passes` parallel passes) to latent; and
`refine_answer` (every position filled in `--passes` passes, no token-by-token decoding) to hybrid.
`thoughts_only`: the same for the thoughts alone (one answer token), refine against latent.

vLLM (when installed, `--no-vllm` skips it): the vLLM engine (neuralese.vllm_engine) on the same
model and batch, in token mode (`off`: vLLM writes every token) and latent mode (the policy
computes the thoughts, vLLM writes the answer), in positions/s, as ratios to HF `generate`
and to our HF engine in the same mode. vLLM starts from the same folder in this process; on a
CPU build its KV cache is `--vllm-kv-mib` MiB.

Memory: of a recompute + backward, for K = 4 and K = 32 thoughts with windows 0, 4 and
`full` (neuralese.memory): on CUDA the allocator's peak, on CPU (no allocator statistics) the bytes
of distinct tensors autograd saves for the backward pass, which is what the window changes. `*_total_MiB`
is the whole figure; `K*_window_*_MiB` what the live chain adds over window 0 at the same
chain length (window 0 is one parallel pass, which grows with the sequence in every mode, token
mode included). Goal: with window 4 the chain's memory stays flat from K = 4 to K = 32 (within
1.25x), while exact BPTT grows with K.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.harness import ENV_ARGS, header, model_flags, report, tiny_model
from neuralese.config import NeuraleseConfig
from neuralese.envs import make_env
from neuralese.memory import recompute_memory
from neuralese.policy import NeuralesePolicy


def model_folder(args: argparse.Namespace) -> str:
    """--model, or a tiny untrained model of the flags' shape in a temporary folder."""
    if args.model:
        return args.model
    return str(tiny_model(args, Path(tempfile.mkdtemp()) / "bench-model", max_positions=512))


def prompts(n: int) -> list[str]:
    """The first `n` test prompts of the addition task every engine answers."""
    return list(make_env("addition", ENV_ARGS).dataset("test", n, seed=0)["prompt"])


def timed(fns: dict, reps: int, device: str) -> dict[str, float]:
    """Median seconds of each `fns[name]()` over `reps` rounds after one warm-up. The engines take
    turns within each round, so a change in machine load hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def throughput(path: str, args) -> dict:
    """Seconds per batch of HF generate and of every mode's rollout, as rates and ratios."""
    base = NeuralesePolicy.from_pretrained(path, device=args.device)
    ids, mask = base.encode(prompts(args.batch))
    n = args.batch * args.positions
    g = torch.Generator(device=args.device)

    def hf():
        base.model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            max_new_tokens=args.positions,
            min_new_tokens=args.positions,
            pad_token_id=base.pad_token_id,
        )

    def ours(mode: str, positions: int = args.positions, **settings):
        cfg = NeuraleseConfig(mode=mode, num_thoughts=args.thoughts, refine_passes=args.passes, **settings)
        policy = NeuralesePolicy.from_pretrained(path, config=cfg, device=args.device)
        answer_tokens = positions - policy.mode.thought_positions

        def run():
            ro = policy.rollout(ids, mask, answer_tokens, 1.0, g, ignore_eos=True)
            assert ro.input_ids.shape[1] - ro.prompt_length == positions

        return run

    engines = {
        "hf": hf,
        "latent": ours("latent"),
        "hybrid": ours("hybrid"),
        "channel": ours("channel"),
        "refine": ours("refine"),
        "refine_answer": ours("refine", refine_over="answer"),
        "latent_thoughts_only": ours("latent", args.thoughts + 1),
        "refine_thoughts_only": ours("refine", args.thoughts + 1),
    }
    secs = timed(engines, args.reps, args.device)
    result = {"hf_generate_tokens_per_s": n / secs["hf"]}
    for mode in ("latent", "hybrid", "channel", "refine", "refine_answer"):
        result[f"{mode}_positions_per_s"] = n / secs[mode]
        result[f"{mode}_ratio_to_hf"] = secs["hf"] / secs[mode]
    # Time ratios to the sequential peer (< 1: faster).
    result["channel_time_over_hybrid"] = secs["channel"] / secs["hybrid"]
    result["refine_time_over_latent"] = secs["refine"] / secs["latent"]
    result["refine_answer_time_over_hybrid"] = secs["refine_answer"] / secs["hybrid"]
    result["thoughts_only_refine_time_over_latent"] = (
        secs["refine_thoughts_only"] / secs["latent_thoughts_only"]
    )
    return result


def vllm_throughput(path: str, args, result: dict) -> dict:
    """vLLM engine positions/s in token and latent mode, as ratios to HF generate and to our HF engine."""
    from neuralese.config import VLLMConfig
    from neuralese.vllm_engine import VLLMEngine

    latent = NeuralesePolicy.from_pretrained(
        path, config=NeuraleseConfig(mode="latent", num_thoughts=args.thoughts), device=args.device
    )
    cfg = VLLMConfig(
        kv_cache_memory_bytes=args.vllm_kv_mib * 2**20 if args.device == "cpu" else None,
        gpu_memory_utilization=0.5,
        max_model_len=512,
    )
    engine = VLLMEngine(latent, cfg, seed=0, workdir=tempfile.mkdtemp())
    n = args.batch * args.positions
    out = {}
    for mode, policy in (
        ("off", NeuralesePolicy.from_pretrained(path, device=args.device)),
        ("latent", latent),
    ):
        ids, mask = policy.encode(prompts(args.batch))
        answer_tokens = args.positions - policy.mode.thought_positions
        g = torch.Generator(device=args.device).manual_seed(0)

        def run(policy=policy, ids=ids, mask=mask, answer_tokens=answer_tokens, g=g):
            ro = engine.generate(policy, ids, mask, answer_tokens, 1.0, g, ignore_eos=True)
            assert ro.input_ids.shape[1] - ro.prompt_length == args.positions

        out[f"vllm_{mode}_positions_per_s"] = n / timed({mode: run}, args.reps, args.device)[mode]
        out[f"vllm_{mode}_ratio_to_hf"] = (
            out[f"vllm_{mode}_positions_per_s"] / result["hf_generate_tokens_per_s"]
        )
    out["vllm_latent_over_hf_engine"] = out["vllm_latent_positions_per_s"] / result["latent_positions_per_s"]
    return out


def chain_length_memory(path: str, args, num_thoughts: int, window) -> int:
    """`recompute_memory` of latent rollouts with `num_thoughts` thoughts and 8 answer tokens."""
    cfg = NeuraleseConfig(mode="latent", num_thoughts=num_thoughts, tbptt_window=window)
    policy = NeuralesePolicy.from_pretrained(path, config=cfg, device=args.device)
    ids, mask = policy.encode(prompts(args.batch))
    ro = policy.rollout(
        ids, mask, 8, 1.0, torch.Generator(device=args.device).manual_seed(0), ignore_eos=True
    )
    return recompute_memory(policy, ro, window)


def memory(path: str, args) -> dict:
    """Latent-chain memory at K = 4 and 32 thoughts and windows 0, 4 and full (module docstring)."""
    out, saved = {}, {}
    for k in (4, 32):
        for window in (0, 4, "full"):
            saved[k, window] = chain_length_memory(path, args, k, window) / 2**20
            out[f"K{k}_window_{window}_total_MiB"] = saved[k, window]
        for window in (4, "full"):  # what the live chain adds over the parallel pass of window 0
            out[f"K{k}_window_{window}_MiB"] = saved[k, window] - saved[k, 0]
    for window in (0, 4, "full"):
        out[f"window_{window}_total_K32_over_K4"] = saved[32, window] / saved[4, window]
    out["window4_K32_over_K4"] = out["K32_window_4_MiB"] / out["K4_window_4_MiB"]
    out["full_K32_over_K4"] = out["K32_window_full_MiB"] / out["K4_window_full_MiB"]
    return out


def main() -> None:
    """Build or take the model, measure throughput (and vLLM) and memory, report."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_rollout", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="local model folder (default: a tiny Llama built here)")
    model_flags(p)
    p.add_argument("--batch", type=int, default=32, help="prompts per batch")
    p.add_argument("--positions", type=int, default=64, help="generated positions per prompt")
    p.add_argument(
        "--thoughts", type=int, default=8, help="thought positions in latent mode (of --positions)"
    )
    p.add_argument("--passes", type=int, default=3, help="refine mode's parallel passes T")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--no-vllm", action="store_true", help="skip the vLLM engine even when vLLM is installed")
    p.add_argument("--vllm-kv-mib", type=int, default=512, help="vLLM KV cache on a CPU build, MiB")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    torch.manual_seed(0)
    path = model_folder(args)
    results = header(args)
    results.update(throughput(path, args))
    if not args.no_vllm and importlib.util.find_spec("vllm") is not None:
        results.update(vllm_throughput(path, args, results))
    results.update(memory(path, args))
    report(results, 28, args.json)


if __name__ == "__main__":
    main()
