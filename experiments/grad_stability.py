"""Gradient stability: the gradient that reaches the first feedback position, against the length of
the latent chain, for TBPTT windows 0, 4, 16 and full.

    .venv/bin/python -m experiments.grad_stability          # tiny model, K = 8..128 thoughts
    .venv/bin/python -m experiments.grad_stability --gate 0.9 --chains 8,32,128

Setup: a tiny Llama (random init, fp32, CPU) in latent mode, `linear` projection at its
identity init, and the gate opened to tanh(lambda) = 0.5 in every dimension (lambda =
atanh(0.5)), standing in for a trained state: at init the gate is 0 and no gradient crosses
a feedback edge at all. For each chain length K one rollout of 8 addition prompts (sampled,
seeded), then for each window a recompute with gradient (`NeuralesePolicy.recompute`)
and a backward of the loss -sum(answer log-probs) / batch. A zero `probe` added to every fed-back
hidden state collects the gradient reaching each feedback edge's source (as in training's
`feedback/latent_grad_norm`). Printed, per sequence and averaged over the batch:

- first edge: |dL/dh| at the source of the first feedback edge (the prompt's last position);
- deepest live edge: the same at the source of the earliest edge the window lets gradient cross
  (the first edge for `full`; none for window 0);
- latent path: |dL/dh| over all feedback sources together.

A window of k lets gradient cross at most k edges, so with k < K the first edge gets exactly
zero and the latent path is the last k edges only; with `full` the first edge's gradient is
whatever the whole chain passes back. A window >= K is the same as `full` (marked =full).
Results and their reading: BENCHMARKS.md, "Gradient stability".
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from neuralese.config import NeuraleseConfig, TinyModelConfig, from_dict
from neuralese.envs import env_texts, make_env
from neuralese.policy import NeuralesePolicy
from neuralese.recompute import Window, live_edges
from neuralese.rollout import Rollout
from neuralese.tiny import save_untrained

PROMPTS = 8
ANSWER_TOKENS = 4


def model_folder(hidden: int, layers: int, max_chain: int) -> Path:
    """An untrained tiny Llama with room for `max_chain` thoughts, in a temporary folder."""
    texts = env_texts(make_env("addition", {"digits": 3}).dataset("train", 500, seed=0))
    tiny = TinyModelConfig(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=4,
        intermediate_size=4 * hidden,
        max_positions=max_chain + 64,
    )
    return save_untrained(texts, tiny, Path(tempfile.mkdtemp()) / "grad-model")


def parse_windows(text: str) -> list[Window]:
    """TBPTT windows from a comma-separated flag (`0,4,full`), each read and checked as the recipe
    field `neuralese.tbptt_window` is."""
    return [
        from_dict(NeuraleseConfig, {"tbptt_window": yaml.safe_load(w)}, "--windows").tbptt_window
        for w in text.split(",")
    ]


def make_policy(folder: Path, num_thoughts: int, gate: float, weight_scale: float) -> NeuralesePolicy:
    """A latent policy with `num_thoughts` thoughts, its gate opened to `gate` and its weights scaled."""
    cfg = NeuraleseConfig(mode="latent", num_thoughts=num_thoughts, projection="linear")
    policy = NeuralesePolicy.from_pretrained(folder, config=cfg)
    with torch.no_grad():
        policy.adapter.gate_logit.fill_(math.atanh(gate))
        for p in policy.model.parameters():  # > 1: sharper attention and larger Jacobians than at init
            if p.dim() > 1:
                p.mul_(weight_scale)
    return policy


def rollout(policy: NeuralesePolicy) -> Rollout:
    """One sampled, seeded rollout of PROMPTS addition prompts, every sequence at full length."""
    prompts = make_env("addition", {"digits": 3}).dataset("test", PROMPTS, seed=0)["prompt"]
    ids, mask = policy.encode(list(prompts))
    generator = torch.Generator().manual_seed(0)
    return policy.rollout(ids, mask, ANSWER_TOKENS, 1.0, generator, ignore_eos=True)


def edge_norms(policy: NeuralesePolicy, ro: Rollout, window) -> dict[str, float | None]:
    """Per-sequence gradient norms at the feedback sources, averaged over the batch."""
    K, plen = policy.config.num_thoughts, ro.prompt_length
    probe = torch.zeros(*ro.input_ids.shape, policy.hidden_size, requires_grad=True)  # [B, L, D]
    policy.zero_grad(set_to_none=True)
    rc = policy.recompute(ro, window, probe=probe)
    loss = -(rc.token_logprobs * ro.action_mask).sum() / ro.input_ids.shape[0]
    loss.backward()
    grad = probe.grad if probe.grad is not None else torch.zeros_like(probe)  # None: no edge is live
    per_pos = grad.norm(dim=-1)  # [B, L]
    k = live_edges(window, K)
    sources = slice(plen - 1, plen + K - 1)  # the source of the edge into thought t is t - 1
    return {
        "first": per_pos[:, plen - 1].mean().item(),
        "deepest": per_pos[:, plen + K - k - 1].mean().item() if k else None,
        "path": grad[:, sources].flatten(1).norm(dim=-1).mean().item(),
    }


def measure(folder: Path, chains: list[int], windows: list, gate: float, weight_scale: float) -> dict:
    """`edge_norms` for every chain length and window."""
    results = {}
    for K in chains:
        policy = make_policy(folder, K, gate, weight_scale)
        ro = rollout(policy)
        assert int(ro.num_thoughts.min()) == K, "every sequence must think K times"
        for w in windows:
            results[K, w] = edge_norms(policy, ro, w)
            print(f"K={K:4d} window={w!s:>4}: {results[K, w]}", file=sys.stderr)
    return results


def fmt(value: float | None, K: int, w: Window) -> str:
    """A norm for a cell; a numeric window that keeps all K edges live is marked as being `full`."""
    if value is None:
        return "—"
    same = " (=full)" if isinstance(w, int) and 0 < w and live_edges(w, K) == K else ""
    return f"{value:.2e}{same}"


def table(results: dict, chains: list[int], windows: list, key: str, title: str) -> str:
    """A markdown table of one norm: a row per chain length, a column per window."""
    head = f"| thoughts K | {' | '.join(f'window {w}' for w in windows)} |"
    rows = [head, "|" + "---:|" * (len(windows) + 1)]
    for K in chains:
        rows.append(f"| {K} | " + " | ".join(fmt(results[K, w][key], K, w) for w in windows) + " |")
    return f"**{title}**\n\n" + "\n".join(rows)


def main() -> None:
    """Measure every chain length and window; print the three tables."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.grad_stability", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chains", default="8,16,32,64,128", help="numbers of thoughts K")
    parser.add_argument("--windows", default="0,4,16,full", help="TBPTT windows")
    parser.add_argument("--gate", type=float, default=0.5, help="tanh(lambda) in every dimension")
    parser.add_argument("--weight-scale", type=float, default=1.0, help="multiply every weight matrix")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    chains = [int(c) for c in args.chains.split(",")]
    windows = parse_windows(args.windows)
    folder = model_folder(args.hidden, args.layers, max(chains))
    results = measure(folder, chains, windows, args.gate, args.weight_scale)
    print(table(results, chains, windows, "first", "|dL/dh| at the source of the first feedback edge"))
    print()
    print(table(results, chains, windows, "deepest", "|dL/dh| at the source of the deepest live edge"))
    print()
    print(
        table(results, chains, windows, "path", "|dL/dh| over the whole latent path (all feedback sources)")
    )


if __name__ == "__main__":
    main()
