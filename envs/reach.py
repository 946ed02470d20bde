"""Graph reachability: which of two nodes can a root reach? Symbolic ProsQA.

The task of "Reasoning by Superposition" (Zhu et al. 2025): a random directed graph is
listed as edges, and the question names a root and two candidates, exactly one of which
the root reaches. A written chain of thought is the path from the root to the reachable
candidate; a continuous thought can instead hold the whole frontier of a breadth-first
search at once (a superposition of the nodes reached so far), which is why the paper
finds continuous thoughts need far fewer steps than discrete ones.

    prompt  "a>c,c>e,b>d,d>f,a>g|a:f?e="     edges; from a, is f or e reachable?
    answer  "e"
    cot     "c,e"                            the nodes of a shortest path after the root
    walk    "c,e"  or  "g,c"                 `chain: walk`: a random walk down from the root

With `chain: walk` the written chain is a random walk down the root's tree (neuralese.envs.walks: each
step a child of the node before, drawn uniformly; a leaf hands on to any node of the next depth), and
the answer comes last whether the walk met it or not. A model trained on such walks learns, at each
step, the walk's distribution over the nodes of that depth; its embedding-space thought at temperature
1 is then the breadth-first frontier in one position, while a written walk commits to one branch.
Every row (either chain) holds, for each step before the answer, the nodes it can reach (`reachable`:
the nodes of its depth below the root) and the walk's probability of each (`reachable_weights`), so a
thought's weights can be scored against them (neuralese.superposition).

Nodes are letters, and letters next to each other would be one word to a tokenizer: the prompt
ends in `=` and the chain's nodes are comma-separated, so every node is a token of its own.

Nodes are single letters. The graph holds two trees, one below each of two roots: each root
gets a path of `hops` edges whose end is its candidate, the other nodes hang from random
nodes of a random side, and up to `extra_edges` more edges join nodes of one side one level
apart (so no path gets shorter and the sides stay apart). The reachable candidate is then
exactly `hops` edges below the root, and the other only the second root reaches. `written_steps` holds
the path's steps before the answer (one node each) for the RL curriculum. Train and test
problems are disjoint (a fixed hash of the problem picks its split).

    >>> env = make_reach(nodes=8, hops=2)
    >>> row = env.dataset("train", 1, seed=0)[0]
    >>> reachable(row["prompt"]) == row["answer"]
    True
"""

from __future__ import annotations

import random
import string
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets

from neuralese.envs.draws import draw_split, last_symbol_match
from neuralese.envs.walks import children_of, depths, draw_walk, frontier_columns

LETTERS = string.ascii_lowercase
CHAINS = ("shortest", "walk")


def reach_match(prompts: list, completions: list, answer: list[str], **_: Any) -> list[float | None]:
    """1.0 when the last letter a completion writes is the answer, else 0.0.

    >>> reach_match(["..."] * 3, ["ce", "e", "cf"], answer=["e", "e", "e"])
    [1.0, 1.0, 0.0]
    """
    return last_symbol_match(completions, answer, str.isalpha)


def reachable(prompt: str) -> str:
    """The candidate of a prompt that its root reaches (an independent check of the generator)."""
    edges, question = prompt.split("|")
    children: dict[str, list[str]] = {}
    for edge in edges.split(","):
        a, b = edge.split(">")
        children.setdefault(a, []).append(b)
    root, options = question.rstrip("=").split(":")
    seen, queue = {root}, deque([root])
    while queue:
        for v in children.get(queue.popleft(), []):
            if v not in seen:
                seen.add(v)
                queue.append(v)
    hits = [o for o in options.split("?") if o in seen]
    if len(hits) != 1:
        raise ValueError(f"{prompt!r}: the root reaches {len(hits)} of the candidates, not exactly one")
    return hits[0]


@dataclass
class Reach:
    """Reachability questions on graphs of `nodes` letters, the answer `hops` edges below the root."""

    nodes: int = 10
    hops: int = 3
    extra_edges: int = 2
    cot: bool = False
    min_hops: int | None = None
    chain: str = "shortest"
    reward_funcs: list = field(default_factory=lambda: [reach_match])
    check: Callable = reach_match  # correct when it scores 1

    def __post_init__(self):
        if not 2 * (self.hops + 1) <= self.nodes <= len(LETTERS):
            raise ValueError(
                f"need 2 * (hops + 1) <= nodes <= 26 (two roots, each with a path of `hops` edges), "
                f"got nodes={self.nodes!r}, hops={self.hops!r}"
            )
        if self.hops < 1 or self.extra_edges < 0:
            raise ValueError(f"need hops >= 1 and extra_edges >= 0, got {self.hops!r}, {self.extra_edges!r}")
        low = self.hops if self.min_hops is None else self.min_hops
        if not 1 <= low <= self.hops:
            raise ValueError(
                f"need 1 <= min_hops <= hops, got min_hops={self.min_hops!r}, hops={self.hops!r}"
            )
        self.min_hops = low
        if self.chain not in CHAINS:
            raise ValueError(f"chain must be one of {CHAINS}, got {self.chain!r}")
        if self.chain != "shortest" and not self.cot:
            raise ValueError(f"chain={self.chain!r} is a written chain: it needs cot=True")

    def problem(self, rng: random.Random) -> dict[str, Any]:
        names = rng.sample(LETTERS, self.nodes)
        hops = rng.randint(self.min_hops, self.hops)
        order = list(range(2, self.nodes))
        rng.shuffle(order)
        chains = {0: order[:hops], 1: order[hops : 2 * hops]}
        parent, depth, side = {}, {0: 0, 1: 0}, {0: 0, 1: 1}
        for s, chain in chains.items():  # each root gets a path of `hops` edges
            prev = s
            for node in chain:
                parent[node], depth[node], side[node], prev = prev, depth[prev] + 1, s, node
        for node in order[2 * hops :]:  # the rest hang from a random node of a random side
            s = rng.randrange(2)
            hooks = [i for i in side if side[i] == s and i != chains[s][-1]]
            p = rng.choice(hooks)
            parent[node], depth[node], side[node] = p, depth[p] + 1, s
        edges = {(p, c) for c, p in parent.items()}
        for _ in range(self.extra_edges):
            # Within one side, and one level down: no path gets shorter, the other side stays unreachable.
            a, b = rng.sample(sorted(side), 2)
            if side[a] == side[b] and depth[b] == depth[a] + 1:
                edges.add((a, b))
        root = rng.randrange(2)
        target, negative = chains[root][-1], chains[1 - root][-1]
        listed = [f"{names[a]}>{names[b]}" for a, b in sorted(edges)]
        rng.shuffle(listed)
        options = [names[target], names[negative]]
        rng.shuffle(options)
        path = [names[i] for i in shortest_path(edges, root, target)[1:]]
        row = {
            "prompt": ",".join(listed) + f"|{names[root]}:{options[0]}?{options[1]}=",
            "answer": names[target],
        }
        kids = children_of(edges)
        if self.chain == "walk":  # its own generator: the graphs and questions are those of `shortest`
            walk = draw_walk(random.Random(row["prompt"]), kids, depths(kids, root), root, hops - 1)
            path = [names[i] for i in walk] + [names[target]]
        # What each step before the answer can reach, for either chain (neuralese.superposition)
        row["reachable"], row["reachable_weights"] = frontier_columns(
            kids, root, hops - 1, lambda _, n: names[n]
        )
        steps = [f"{n}," for n in path[:-1]] + [path[-1]]
        return {
            **row,
            "completion": "".join(steps) if self.cot else names[target],
            "written_steps": steps[:-1] if self.cot else [],
            "hops": hops,
        }

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        key = f"reach-{seed}-{split}-{self.nodes}-{self.min_hops}-{self.hops}-{self.extra_edges}"
        return draw_split(self.problem, split, n, key)


def shortest_path(edges: set[tuple[int, int]], source: int, target: int) -> list[int]:
    """A shortest path from `source` to `target` (breadth-first, ties to the first edge found)."""
    children: dict[int, list[int]] = {}
    for a, b in sorted(edges):
        children.setdefault(a, []).append(b)
    back, queue = {source: None}, deque([source])
    while queue:
        u = queue.popleft()
        for v in children.get(u, []):
            if v not in back:
                back[v] = u
                queue.append(v)
    path = [target]
    while back[path[-1]] is not None:
        path.append(back[path[-1]])
    return path[::-1]


def make_reach(
    nodes: int = 10,
    hops: int = 3,
    extra_edges: int = 2,
    cot: bool = False,
    min_hops: int | None = None,
    chain: str = "shortest",
) -> Reach:
    """Graph reachability over `nodes` letters; the reachable candidate is `hops` edges below the root
    (`min_hops` to `hops` when given, drawn per problem).
    `cot`: the stage-0 target is a chain from the root with the answer last: a shortest path to it
    (`chain: shortest`), or a random walk down the root's tree (`chain: walk`; see the module)."""
    return Reach(nodes=nodes, hops=hops, extra_edges=extra_edges, cot=cot, min_hops=min_hops, chain=chain)
