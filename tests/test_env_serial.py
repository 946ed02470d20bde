"""The serial-depth tasks (chase, reach, mnns): answers checked by code written independently of the
generators, split disjointness, the chain-of-thought format and its written steps, bad arguments."""

from __future__ import annotations

import itertools

import pytest

from neuralese.envs import correctness_check, make_env
from neuralese.errors import EnvError


def follow(prompt: str) -> tuple[list[str], str]:
    """Pointer chasing solved from the prompt text alone: (visited nodes, answer)."""
    edges, question = prompt.split("|")
    succ = {e[0]: e[1] for e in edges.split(",")}
    hops, start = question.split(":")
    path = [start]
    for _ in range(int(hops)):
        path.append(succ[path[-1]])
    return path[1:], path[-1]


def brute_mnns(prompt: str) -> int:
    numbers = [int(x) for x in prompt.rstrip("?").split(",")]
    totals = [
        sum(s * n for s, n in zip(signs, numbers))
        for signs in itertools.product((1, -1), repeat=len(numbers))
    ]
    return min(t for t in totals if t >= 0)


def reach_by_dfs(prompt: str) -> set[str]:
    edges, question = prompt.split("|")
    graph: dict[str, set[str]] = {}
    for e in edges.split(","):
        graph.setdefault(e[0], set()).add(e[2])
    root = question.split(":")[0]
    seen, stack = set(), [root]
    while stack:
        u = stack.pop()
        for v in graph.get(u, ()):
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return seen


@pytest.mark.parametrize("args", [{"nodes": 8, "hops": 4}, {"nodes": 5, "hops": 3, "min_hops": 1}])
def test_chase_answers_and_chains(args):
    env = make_env("chase", {**args, "cot": True})
    rows = env.dataset("train", 200, seed=3)
    hops = set()
    for row in rows:
        visited, answer = follow(row["prompt"])
        assert row["answer"] == answer and row["completion"] == "".join(visited)
        assert row["written_steps"] == visited[:-1]
        hops.add(len(visited))
        edges = row["prompt"].split("|")[0].split(",")
        assert sorted(e[0] for e in edges) == sorted(e[1] for e in edges)  # a permutation
        assert len(set([row["prompt"][-1], *visited])) == len(visited) + 1  # one cycle: no node twice
    assert hops == set(range(args.get("min_hops", args["hops"]), args["hops"] + 1))
    score = correctness_check(env)
    assert score(rows["prompt"], rows["completion"], answer=rows["answer"]) == [1.0] * len(rows)


def test_chase_edge_chain_cites_each_edge_it_follows():
    env = make_env("chase", {"nodes": 8, "hops": 4, "cot": True, "chain": "edges"})
    for row in env.dataset("train", 100, seed=0):
        visited, answer = follow(row["prompt"])
        start = row["prompt"][-1]
        cited = row["completion"].split(",")
        assert cited == [a + b for a, b in zip([start, *visited], visited)]
        assert cited[-1][-1] == row["answer"] == answer and set(cited) <= set(
            row["prompt"].split("|")[0].split(",")
        )
        assert row["written_steps"] == [c + "," for c in cited[:-1]]


def test_reach_has_exactly_one_reachable_candidate_at_the_given_depth():
    env = make_env("reach", {"nodes": 12, "hops": 4, "cot": True})
    rows = env.dataset("train", 200, seed=1)
    for row in rows:
        reached = reach_by_dfs(row["prompt"])
        a, b = row["prompt"].split(":")[1].rstrip("=").split("?")
        assert (a in reached) != (b in reached) and row["answer"] in reached
        path = row["completion"].split(",")
        assert (
            len(path) == 4
            and path[-1] == row["answer"]
            and row["written_steps"] == [f"{n}," for n in path[:-1]]
        )
        edges = set(row["prompt"].split("|")[0].split(","))
        nodes = [row["prompt"].split(":")[0].split("|")[1], *path]
        assert all(f"{u}>{v}" in edges for u, v in zip(nodes, nodes[1:]))  # the chain is a real path


def test_mnns_answer_is_the_brute_force_minimum():
    env = make_env("mnns", {"count": 5, "max_number": 9, "cot": True})
    rows = env.dataset("test", 100, seed=0)
    for row in rows:
        assert int(row["answer"]) == brute_mnns(row["prompt"])
        assert row["completion"].startswith("".join(row["written_steps"]))
        assert len(row["written_steps"]) == 4 and row["completion"].endswith(f"={row['answer']}")


@pytest.mark.parametrize("name,args", [("chase", {"nodes": 6, "hops": 3}), ("reach", {}), ("mnns", {})])
def test_splits_are_disjoint_and_answer_only_targets_are_the_answer(name, args):
    env = make_env(name, args)
    train = env.dataset("train", 300, seed=0)
    test = env.dataset("test", 100, seed=0)
    assert not set(train["prompt"]) & set(test["prompt"])
    assert train["completion"] == train["answer"] and all(s == [] for s in train["written_steps"])
    assert env.dataset("train", 50, seed=0)["prompt"] == train["prompt"][:50]  # seeded


@pytest.mark.parametrize(
    "name,args",
    [
        ("chase", {"nodes": 11}),
        ("chase", {"hops": 3, "min_hops": 4}),
        ("chase", {"nodes": 4, "hops": 4}),
        ("reach", {"nodes": 6, "hops": 3}),
        ("mnns", {"count": 1}),
        ("mnns", {"max_number": 0}),
    ],
)
def test_bad_arguments_are_refused_with_the_rule(name, args):
    with pytest.raises(EnvError, match="rejected env.args"):
        make_env(name, args)


def test_chase_refuses_more_problems_than_exist():
    env = make_env("chase", {"nodes": 3, "hops": 1})
    with pytest.raises(ValueError, match="distinct"):
        env.dataset("train", 50, seed=0)


@pytest.mark.parametrize(
    "name,args,column,span",
    [
        ("reach", {"nodes": 12, "min_hops": 2, "hops": 4, "cot": True}, "hops", {2, 3, 4}),
        ("mnns", {"min_count": 3, "count": 5, "cot": True}, "count", {3, 4, 5}),
    ],
)
def test_mixed_difficulty_draws_every_level_and_stays_correct(name, args, column, span):
    env = make_env(name, args)
    rows = env.dataset("train", 150, seed=2)
    assert set(rows[column]) == span
    for row in rows:
        if name == "reach":
            assert len(row["completion"].split(",")) == row["hops"] and row["answer"] in reach_by_dfs(
                row["prompt"]
            )
        else:
            assert (
                int(row["answer"]) == brute_mnns(row["prompt"])
                and len(row["written_steps"]) == row["count"] - 1
            )


def levels(prompt: str) -> dict[str, int]:
    """Breadth-first depth of every node the root reaches, from the prompt text alone."""
    edges, question = prompt.split("|")
    graph: dict[str, set[str]] = {}
    for e in edges.split(","):
        graph.setdefault(e[0], set()).add(e[2])
    depth, frontier, level = {question[0]: 0}, [question[0]], 0
    while frontier:
        frontier, level = sorted({v for u in frontier for v in graph.get(u, ()) if v not in depth}), level + 1
        depth.update(dict.fromkeys(frontier, level))
    return depth


def test_reach_walk_chain_goes_down_the_roots_tree_and_its_frontier_is_the_walks_distribution():
    args = {"nodes": 16, "hops": 4, "min_hops": 2, "cot": True}
    walks = make_env("reach", {**args, "chain": "walk"}).dataset("train", 300, seed=1)
    paths = make_env("reach", args).dataset("train", 300, seed=1)
    assert walks["prompt"] == paths["prompt"] and walks["answer"] == paths["answer"]  # only the chain differs
    met, wide = 0, 0
    for row in walks:
        depth, edges = levels(row["prompt"]), set(row["prompt"].split("|")[0].split(","))
        nodes = row["completion"].split(",")
        assert nodes[-1] == row["answer"] and len(nodes) == row["hops"] == len(row["reachable"]) + 1
        assert row["written_steps"] == [f"{n}," for n in nodes[:-1]]
        root = row["prompt"].split("|")[1][0]
        for t, (node, here, p) in enumerate(zip(nodes, row["reachable"], row["reachable_weights"]), 1):
            assert here == sorted(n for n, d in depth.items() if d == t) and node in here
            assert len(p) == len(here) and abs(sum(p) - 1) < 1e-9 and min(p) > 0
            before = nodes[t - 2] if t > 1 else root
            has_children = any(e.startswith(before + ">") for e in edges)
            assert f"{before}>{node}" in edges or not has_children  # a child, or a hand-off from a leaf
            wide += len(here) > 1
        met += f"{nodes[-2]}>{row['answer']}" in edges
    assert 0 < met < len(walks) and wide > len(walks)  # walks miss the answer; frontiers hold several nodes


def test_walk_distribution_is_where_the_walks_go():
    import random

    from neuralese.envs.walks import children_of, depths, draw_walk, walk_distribution

    # 4 is a leaf (it hands on to all of depth 3), and 9, a child of 2, is reached sooner from 0.
    kids = children_of(
        [(0, 2), (0, 3), (0, 9), (2, 4), (2, 9), (3, 5), (3, 6), (5, 7), (6, 8), (9, 10), (10, 8)]
    )
    depth = depths(kids, 0)
    assert depth == {0: 0, 2: 1, 3: 1, 9: 1, 4: 2, 5: 2, 6: 2, 10: 2, 7: 3, 8: 3}
    exact = walk_distribution(kids, depth, 0, 3)
    rng, n = random.Random(0), 20000
    counts = [dict.fromkeys(step, 0) for step in exact]
    for _ in range(n):
        for t, node in enumerate(draw_walk(rng, kids, depth, 0, 3)):
            counts[t][node] += 1
    for step, seen in zip(exact, counts):
        assert set(step) == set(seen) and all(abs(seen[k] / n - p) < 0.015 for k, p in step.items())
    third = 1 / 3
    assert exact[1] == pytest.approx({4: third, 5: third / 2, 6: third / 2, 10: third})  # 2 -> only 4
    assert exact[2] == pytest.approx(
        {7: third / 2 + third / 2, 8: third / 2 + third / 2 + third}
    )  # 4 hands on


def test_reach_walk_needs_a_written_chain():
    with pytest.raises((EnvError, ValueError), match="cot=True"):
        make_env("reach", {"chain": "walk"})
    with pytest.raises((EnvError, ValueError), match="chain must be one of"):
        make_env("reach", {"cot": True, "chain": "bfs"})
