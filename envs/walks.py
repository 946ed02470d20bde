"""Walks down a graph from its root, and where they are at each step: the frontier a thought can hold.

A written chain that walks down a graph commits to one node a step. A model trained on such walks,
drawn at random, learns at each step the distribution of the walk over the nodes of that depth; its
embedding-space thought at temperature 1 is that distribution, the breadth-first frontier, in one
position. `reach` and `prosqa` write such walks (`chain: walk`) and give every row the frontier of each
step (`reachable`, `reachable_weights`: neuralese.superposition scores a thought against it).

A walk stays on breadth-first depth: step t is a node at depth t from the root, a child of the node
before it when one is at that depth, else (a leaf, or children reached sooner by another way) a node
drawn uniformly from all of depth t, so the walk goes on at every depth.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable


def children_of(edges: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    """{node: its children, sorted} from (parent, child) pairs."""
    out: dict[int, list[int]] = {}
    for a, b in sorted(set(map(tuple, edges))):
        out.setdefault(a, []).append(b)
    return out


def depths(children: dict[int, list[int]], root: int) -> dict[int, int]:
    """Breadth-first depth from `root` of every node it reaches (itself at 0).

    >>> depths({0: [1, 2], 1: [2, 3]}, 0)
    {0: 0, 1: 1, 2: 1, 3: 2}
    """
    depth, frontier = {root: 0}, [root]
    while frontier:
        ahead = sorted({c for n in frontier for c in children.get(n, ()) if c not in depth})
        depth.update((c, depth[frontier[0]] + 1) for c in ahead)
        frontier = ahead
    return depth


def next_nodes(children: dict[int, list[int]], depth: dict[int, int], node: int) -> list[int]:
    """Where a walk goes from `node` (module docstring)."""
    below = depth[node] + 1
    kids = [c for c in children.get(node, ()) if depth.get(c) == below]
    return kids or sorted(n for n, d in depth.items() if d == below)


def draw_walk(
    rng: random.Random, children: dict[int, list[int]], depth: dict[int, int], root: int, steps: int
) -> list[int]:
    """A walk of `steps` nodes down from `root`, each drawn uniformly from `next_nodes`."""
    walk = [root]
    for _ in range(steps):
        walk.append(rng.choice(next_nodes(children, depth, walk[-1])))
    return walk[1:]


def walk_distribution(
    children: dict[int, list[int]], depth: dict[int, int], root: int, steps: int
) -> list[dict[int, float]]:
    """Where `draw_walk` is at each of its `steps`, exactly: {node: probability}, sorted by node.

    >>> kids = {0: [2, 3], 2: [4], 3: [5, 6]}
    >>> walk_distribution(kids, depths(kids, 0), 0, 2)
    [{2: 0.5, 3: 0.5}, {4: 0.5, 5: 0.25, 6: 0.25}]
    """
    now, out = {root: 1.0}, []
    for _ in range(steps):
        ahead: dict[int, float] = {}
        for node, p in now.items():
            nxt = next_nodes(children, depth, node)
            for n in nxt:
                ahead[n] = ahead.get(n, 0.0) + p / len(nxt)
        now = dict(sorted(ahead.items()))
        out.append(now)
    return out


def frontier_columns(
    children: dict[int, list[int]], root: int, steps: int, text: Callable[[int, int], str]
) -> tuple[list[list[str]], list[list[float]]]:
    """A row's `reachable` and `reachable_weights` for the first `steps` steps of a walk from `root`:
    each step's nodes as that step writes them (`text(step, node)`, step from 0; sorted by that text) and
    the walk's probability of each."""
    spread = walk_distribution(children, depths(children, root), root, steps)
    written = [sorted((text(k, n), p) for n, p in step.items()) for k, step in enumerate(spread)]
    return [[t for t, _ in step] for step in written], [[p for _, p in step] for step in written]
