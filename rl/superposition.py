"""Does a thought hold a superposition? Its weights over the values a step can take, against those it can reach.

An embedding-space thought is w @ E, with w = softmax(z / tau) the next-token distribution of the
position it comes from. When the vocabulary has one token per value (MNNS's partial sums with
`model.tiny.number_pieces`), w is a distribution over values, and a task that knows the values step k
can reach (every sign path of MNNS) tells a thought that holds them all at once (CoT2's continuous
token: the frontier of a breadth-first search) from a soft copy of one written step:

    reachable mass   the share of w on values the step can reach (1: nothing wasted)
    entropy          H(w) in nats: 0 for one token, log(n) for n values equally weighted
    tv uniform       total variation from the uniform distribution over the reachable values
    tv paths         total variation from the distribution of the partial sum over all sign paths,
                     each equally likely (CoT2's supervision target)
    support          how many reachable values hold at least 1/(2n) of the mass, over n reachable:
                     1 when every one is held, 1/n for a single path

For hidden-state thoughts the same distribution is the logit lens of the final state at the source
position (what the model would write there); it says what the thought was read from, not what it is.

The functions below are pure tensor functions; `thought_distributions` reads a policy's thoughts
from a rollout with one teacher-forced pass (`NeuralesePolicy.replay`: forward values equal the rollout's),
and `measure` scores a policy on rows of an environment that says what each step can reach (columns
`reachable`, the token texts of each step, and `reachable_weights`: `neuralese eval --superposition`).
"""

from __future__ import annotations

import re

import torch

INTEGER_TEXT = re.compile(r"[+-]?\d+")


def value_tokens(tokenizer, signed_only: bool = False) -> dict[int, int]:
    """{token id: value} for every vocabulary entry whose text is a whole number (`signed_only`: written
    with its sign, as MNNS's partial sums are, so a prompt's digits do not count)."""
    out = {}
    for text, token_id in tokenizer.get_vocab().items():
        if INTEGER_TEXT.fullmatch(text) and (not signed_only or text[0] in "+-"):
            out[token_id] = int(text)
    return out


def single_token(tokenizer, text: str) -> int | None:
    """The id of `text` when the tokenizer writes it as one known token, else None."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return ids[0] if len(ids) == 1 and ids[0] != tokenizer.unk_token_id else None


def target_weights(
    targets: list[list[dict[int, float]]], token_of: dict[int, int], vocab_size: int
) -> torch.Tensor:
    """[N, K, V] float32: each row's distribution over values at each of K steps, placed on the token of each
    value (`token_of`: {value: token id}). A value without a token is dropped: its mass is lost."""
    out = torch.zeros(len(targets), max(map(len, targets), default=0), vocab_size)
    for n, steps in enumerate(targets):
        for k, dist in enumerate(steps):
            for value, p in dist.items():
                if value in token_of:
                    out[n, k, token_of[value]] += p
    return out


def reachable_mass(weights: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of w on the reachable values (those the target gives mass): [..., V] x2 -> [...]."""
    return (weights * (target > 0)).sum(-1)


def entropy(weights: torch.Tensor) -> torch.Tensor:
    """H(w) in nats: [..., V] -> [...]."""
    w = weights.clamp_min(0)
    return -(w * torch.log(w.clamp_min(1e-30))).sum(-1)


def uniform_over(target: torch.Tensor) -> torch.Tensor:
    """The uniform distribution over the values a target reaches: [..., V] -> [..., V]."""
    support = (target > 0).float()
    return support / support.sum(-1, keepdim=True).clamp_min(1)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Half the L1 distance: [..., V] x2 -> [...], 0 for equal distributions, 1 for disjoint ones.

    >>> total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])).item()
    0.5
    """
    return 0.5 * (p - q).abs().sum(-1)


def support_share(weights: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of the n reachable values that hold at least 1/(2n) of w: [..., V] x2 -> [...]."""
    reach = target > 0
    n = reach.sum(-1, keepdim=True).clamp_min(1)  # [..., 1]
    held = reach & (weights >= 0.5 / n)
    return held.sum(-1) / n.squeeze(-1)


def superposition_stats(weights: torch.Tensor, target: torch.Tensor) -> dict[str, list[float]]:
    """The columns of the module docstring per thought, means over rows: [N, K, V] x2 -> {name: [K]},
    with `entropy uniform`, the entropy of the uniform distribution over the reachable values, for scale.
    A row without a target at a step (its chain is shorter) does not count at that step."""
    n_reach = (target > 0).sum(-1).float()  # [N, K]
    has = n_reach > 0  # [N, K] a row whose chain is shorter than K has no target at its last steps
    columns = {
        "reachable_mass": reachable_mass(weights, target),
        "entropy": entropy(weights),
        "entropy_uniform": torch.log(n_reach.clamp_min(1)),
        "tv_uniform": total_variation(weights, uniform_over(target)),
        "tv_paths": total_variation(weights, target),
        "support": support_share(weights, target),
    }
    counts = has.sum(0).clamp_min(1)  # [K]
    return {name: [round(float(x), 4) for x in (v * has).sum(0) / counts] for name, v in columns.items()}


@torch.no_grad()
def thought_distributions(policy, ro) -> torch.Tensor:
    """[B, K, V] float32: the next-token distribution softmax(z / tau) at the position each of a latent
    rollout's K thoughts comes from (tau = `neuralese.thought_temperature`): an embedding-space thought's
    weights (the distribution its sampled weights are drawn from, for Gumbel and multiplex thoughts)."""
    out = policy.replay(ro, hidden=False)
    thought = ro.feedback_mask & ~ro.action_mask  # [B, L] inputs that are thoughts
    counts = thought.sum(-1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(
            "thought_distributions: every row of the rollout must have the same number of thoughts"
        )
    rows, cols = thought.nonzero(as_tuple=True)
    logits = out.logits[rows, cols - 1].float()  # [B*K, V] the source position's next-token logits
    weights = torch.softmax(logits / policy.config.thought_temperature, dim=-1)
    return weights.view(thought.shape[0], int(counts[0]), -1)


def reachable_targets(rows, tokenizer, steps: int, vocab_size: int) -> torch.Tensor:
    """[N, `steps`, V]: each row's `reachable_weights` placed on the token of each of its `reachable`
    texts (one list per step before the answer; a text that is not one known token of `tokenizer` loses
    its mass, as a value without a token does in `target_weights`)."""
    for n, (texts, weights) in enumerate(zip(rows["reachable"], rows["reachable_weights"])):
        if len(texts) != len(weights) or any(len(t) != len(w) for t, w in zip(texts, weights)):
            raise ValueError(
                f"superposition: row {n}: `reachable` and `reachable_weights` must have the same shape (a "
                f"list per step, one weight per text), got {texts!r} and {weights!r}"
            )
    one_token: dict[str, int | None] = {}
    for texts in rows["reachable"]:
        for step in texts:
            for text in step:
                if text not in one_token:
                    one_token[text] = single_token(tokenizer, text)
    token_of = {text: i for text, i in one_token.items() if i is not None}
    targets = [
        [dict(zip(texts, weights)) for texts, weights in zip(step_texts, step_weights)][:steps]
        for step_texts, step_weights in zip(rows["reachable"], rows["reachable_weights"])
    ]
    out = target_weights(targets, token_of, vocab_size)
    return torch.nn.functional.pad(out, (0, 0, 0, steps - out.shape[1]))  # rows with fewer steps: zeros


def measure(policy, rows, budget: int, batch_size: int = 512) -> dict[str, list[float]]:
    """The columns of `superposition_stats` for every thought of the policy's greedy answers to `rows`,
    against what each step can reach: rows of an environment that declares it (`reachable` and
    `reachable_weights`, one list per step before the answer: MNNS's partial sums, reach's frontier)."""
    missing = {"reachable", "reachable_weights"} - set(rows.column_names)
    if missing:
        raise ValueError(
            f"superposition: the environment's rows have no {sorted(missing)} column: it must say what "
            "each step can reach (a list of token texts per step, and their weights)"
        )
    weights, targets = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows.select(range(start, min(start + batch_size, len(rows))))
        ids, mask = policy.encode(chunk["prompt"])
        ro = policy.rollout(ids, mask, budget, 0.0)  # greedy
        w = thought_distributions(policy, ro).cpu()  # [b, K, V]
        weights.append(w)
        targets.append(reachable_targets(chunk, policy.tokenizer, w.shape[1], w.shape[-1]))
    return superposition_stats(torch.cat(weights), torch.cat(targets))
