"""Pointer chasing: follow a listed permutation for k hops. A task whose serial depth is k.

The prompt lists a random cyclic permutation of `nodes` single-digit nodes (one cycle
through all of them) as edges, in a random order, then asks for the node `hops` hops from a
start node:

    prompt  "35,52,24,41,17,76,60,03|4:3"     edges 3->5, 5->2, ...; 4 hops from 3
    answer  "1"                              3 -> 5 -> 2 -> 4 -> 1
    cot     "5241"                           every node visited, the last one is the answer
    cot     "35,52,24,41"                    `chain: edges`: every edge used, cited as listed

Each hop is one lookup (find the edge that starts at the current node, read its end), so a
model answers k hops at once only if its depth holds k lookups; a written chain needs one
lookup per written node, and a chain of k latent thoughts one per thought. The question is
put last, with the start node as the last token: the first lookup is then an induction step
("find my token as an edge start, copy the next token"), as every later hop of a chain is.

`cot: true` makes the chain the stage-0 target, in one of two formats: `chain: nodes` writes
each visited node (one token per hop), `chain: edges` cites each edge it follows, as a proof
cites its facts (three tokens per hop, the way ProsQA's steps restate its sentences).
`written_steps` holds the chain's steps before the last (each visited node, or each cited
edge with its comma), which the RL curriculum replaces by thoughts. The answer check (`chase_match`) reads the last node of
a completion, so chains and bare answers are scored alike. Train and test problems are
disjoint: a fixed hash of the permutation and the question assigns each problem to a split.

    >>> env = make_chase(nodes=4, hops=2)
    >>> row = env.dataset("train", 1, seed=0)[0]
    >>> edges = dict(row["prompt"].split("|")[0].split(","))  # {'3': '1', ...}
    >>> start = row["prompt"][-1]
    >>> edges[edges[start]] == row["answer"]
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets

from neuralese.envs.draws import draw_split, last_symbol_match


def chase_match(prompts: list, completions: list, answer: list[str], **_: Any) -> list[float | None]:
    """1.0 when the last node (digit) a completion writes is the answer, else 0.0.

    >>> chase_match(["..."] * 3, ["5241", "1", "52"], answer=["1", "1", "1"])
    [1.0, 1.0, 0.0]
    """
    return last_symbol_match(completions, answer, str.isdigit)


@dataclass
class Chase:
    """k-hop pointer chasing over a random permutation of `nodes` nodes."""

    nodes: int = 8
    hops: int = 4
    min_hops: int | None = None
    cot: bool = False
    chain: str = "nodes"
    reward_funcs: list = field(default_factory=lambda: [chase_match])
    check: Callable = chase_match  # correct when it scores 1

    def __post_init__(self):
        if not 2 <= self.nodes <= 10:
            raise ValueError(f"nodes must be from 2 to 10 (single digits), got {self.nodes!r}")
        low = self.hops if self.min_hops is None else self.min_hops
        if not 1 <= low <= self.hops < self.nodes:
            raise ValueError(
                f"need 1 <= min_hops <= hops < nodes, got min_hops={self.min_hops!r}, hops={self.hops!r}, "
                f"nodes={self.nodes!r}"
            )
        self.min_hops = low
        if self.chain not in ("nodes", "edges"):
            raise ValueError(f"chain must be 'nodes' or 'edges', got {self.chain!r}")

    def problem(self, rng: random.Random) -> dict[str, Any]:
        # One cycle through every node: a chain of up to nodes - 1 hops never comes back to its start,
        # so no answer can be guessed from the start node (with random cycles, 4 hops end where they
        # began for 3 in 8 starts).
        order = list(range(self.nodes))
        rng.shuffle(order)
        perm = [0] * self.nodes
        for a, b in zip(order, order[1:] + order[:1]):
            perm[a] = b
        edges = [f"{a}{perm[a]}" for a in range(self.nodes)]
        rng.shuffle(edges)
        hops, start = rng.randint(self.min_hops, self.hops), rng.randrange(self.nodes)
        path = [start]
        for _ in range(hops):
            path.append(perm[path[-1]])
        if self.chain == "nodes":
            steps = [str(n) for n in path[1:]]
        else:
            steps = [f"{a}{b}," for a, b in zip(path, path[1:])]
            steps[-1] = steps[-1][:-1]
        return {
            "prompt": ",".join(edges) + f"|{hops}:{start}",
            "answer": str(path[-1]),
            "completion": "".join(steps) if self.cot else str(path[-1]),
            "written_steps": steps[:-1] if self.cot else [],
            "hops": hops,
        }

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        key = f"chase-{seed}-{split}-{self.nodes}-{self.min_hops}-{self.hops}"
        return draw_split(self.problem, split, n, key, distinct=True)


def make_chase(
    nodes: int = 8, hops: int = 4, min_hops: int | None = None, cot: bool = False, chain: str = "nodes"
) -> Chase:
    """Pointer chasing: `nodes` nodes (2..10), `hops` hops (`min_hops` to `hops` when given, drawn per
    problem). `cot`: the stage-0 target is the chain, `chain: nodes` (the visited nodes) or `edges` (the
    edges followed); its last node is the answer."""
    return Chase(nodes=nodes, hops=hops, min_hops=min_hops, cot=cot, chain=chain)
