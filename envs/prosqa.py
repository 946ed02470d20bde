"""ProsQA: graph-reachability questions ("Is Tom a lempus or scrompus?"), generated and real.

ProsQA (Hao et al. 2024, the Coconut paper) states a random DAG in words, one shuffled
sentence per edge: "Tom is a terpus." for an edge out of a person, "Every terpus is a
brimpus." between two concepts. The question names one concept reachable from the
person and one that is not; the answer is a sentence ("Tom is a lempus."), and `steps`
is a shortest path from the person to the right concept.

Only the validation split of the real data ships with the project (300 problems, in
`../shared/data/prosqa/`), so training problems are generated here. The graph grows one
node at a time as the paper describes: two people start it (nodes 0 and 1); every new
node draws its number of parents from Poisson(1.5) and picks them, weighted towards
deep nodes, from the nodes only 0 reaches, those only 1 reaches, or all nodes. A
node without parents is one more person, and people without children are dropped.
The constants that the paper leaves open (the split between those three choices, how
often a node may stay parentless, the node count) are fitted to the real split's
statistics: nodes, edges, people, hops and words per question match within a few
percent (`tests/test_env_prosqa.py` checks it). The person whose deepest exclusive leaf
lies deeper asks the question; the right option is that leaf, the wrong one a leaf only
the other person reaches. Generated problems that equal a validation problem are
skipped, so training never sees the evaluation set.

Splits: `train` is generated; `valid`, `validation` and `test` read the real file
(`path` overrides its location) in file order.

    >>> env = make_prosqa()
    >>> row = env.dataset("train", 1, seed=0)[0]
    >>> row["prompt"].endswith("?"), row["answer"].split()[0] in PERSON_NAMES
    (True, True)
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import datasets

from neuralese.envs.files import data_path, read_json_list, require_keys, require_text, take
from neuralese.envs.walks import children_of, depths, draw_walk, frontier_columns
from neuralese.errors import EnvError
from neuralese.rewards.match import ANSWER_MARK, exact_match

VALID_FILE = "prosqa/prosqa_valid.json"
CHAINS = ("sentences", "walk")
EVAL_SPLITS = ("valid", "validation", "test")

# The name pools of the real data: every person and concept name in its validation split.
PERSON_NAMES = (
    "Alex Bob Carol Davis Eva Fae Gabriel Jack Max Oliver Polly Rex Sally Sam Stella Tom Wren"
).split()
CONCEPT_NAMES = (
    "bompus boompus brimpus chorpus dumpus felpus fompus gerpus gorpus grimpus gwompus hilpus impus "
    "jelpus jompus kerpus lempus lorpus numpus quimpus rempus rompus rorpus scrompus shumpus sterpus "
    "storpus terpus timpus tumpus vumpus worpus wumpus yerpus yimpus yumpus zhorpus zumpus"
).split()

# Fitted to the real validation split (see the module docstring).
MEAN_PARENTS = 1.5
ONLY_FROM_0, ONLY_FROM_1 = 0.4, 0.4  # chance a new node's parents come from one side only
KEEP_PARENTLESS = 0.15  # chance that a draw of zero parents stands (a new person)
NODES_DRAWN = (20, 26)  # nodes grown before people without children are dropped
DEPTH_WEIGHT = 1.5  # parent weight = depth * DEPTH_WEIGHT + 1


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson(lam) draw (Knuth's method; lam is small here)."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def weighted_sample(rng: random.Random, items: list[int], weights: list[float], k: int) -> list[int]:
    """`k` distinct items, each draw proportional to the remaining weights."""
    items, weights, out = list(items), list(weights), []
    for _ in range(min(k, len(items))):
        i = rng.choices(range(len(items)), weights=weights)[0]
        out.append(items.pop(i))
        weights.pop(i)
    return out


def grow_dag(rng: random.Random, num_nodes: int) -> list[list[int]] | None:
    """Parents of each node of a random DAG (parents precede children); None if 0 or 1 has no child.

    Labels are bit sets: bit 1 = reached from node 0, bit 2 = reached from node 1.
    """
    labels, parents, depth = [1, 2], [[], []], [0, 0]
    for idx in range(2, num_nodes):
        k = poisson(rng, MEAN_PARENTS)
        while k == 0 and rng.random() >= KEEP_PARENTLESS:
            k = poisson(rng, MEAN_PARENTS)
        u = rng.random()
        allowed = (0, 1) if u < ONLY_FROM_0 else (0, 2) if u < ONLY_FROM_0 + ONLY_FROM_1 else (0, 1, 2, 3)
        candidates = [i for i in range(idx) if labels[i] in allowed]
        chosen = weighted_sample(rng, candidates, [depth[i] * DEPTH_WEIGHT + 1 for i in candidates], k)
        label = 0
        for p in chosen:
            label |= labels[p]
        labels.append(label)
        parents.append(sorted(chosen))
        depth.append(1 + min(depth[p] for p in chosen) if chosen else 0)
    has_child = {p for ps in parents for p in ps}
    keep = [i for i in range(num_nodes) if parents[i] or i in has_child]
    if keep[:2] != [0, 1]:
        return None
    new = {old: j for j, old in enumerate(keep)}
    return [[new[p] for p in parents[old]] for old in keep]


def bfs(children: list[list[int]], source: int) -> dict[int, int]:
    """Shortest distance from `source` to every node it reaches."""
    dist, queue = {source: 0}, deque([source])
    while queue:
        u = queue.popleft()
        for v in children[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def shortest_path(rng: random.Random, children: list[list[int]], source: int, target: int) -> list[int]:
    """One shortest path, chosen at random among all of them."""
    parents = [[] for _ in children]
    for u, vs in enumerate(children):
        for v in vs:
            parents[v].append(u)
    dist = bfs(children, source)
    path = [target]
    while path[-1] != source:
        node = path[-1]
        path.append(rng.choice([p for p in parents[node] if dist.get(p) == dist[node] - 1]))
    return path[::-1]


def sentence(names: list[str], a: int, b: int, persons: set[int]) -> str:
    """The sentence stating edge a -> b."""
    return f"{names[a]} is a {names[b]}." if a in persons else f"Every {names[a]} is a {names[b]}."


def pick_question(rng: random.Random, children: list[list[int]], min_hops: int, max_hops: int):
    """(root, target, neg_target) or None: the root's deepest exclusive leaf against one of the other's."""
    reach = [bfs(children, 0), bfs(children, 1)]
    exclusive = [[i for i in reach[s] if i not in reach[1 - s] and not children[i]] for s in (0, 1)]
    if not exclusive[0] or not exclusive[1]:
        return None
    deepest = [max(reach[s][i] for i in exclusive[s]) for s in (0, 1)]
    root = rng.randrange(2) if deepest[0] == deepest[1] else int(deepest[1] > deepest[0])
    if not min_hops <= deepest[root] <= max_hops:
        return None
    target = rng.choice([i for i in exclusive[root] if reach[root][i] == deepest[root]])
    return root, target, rng.choice(exclusive[1 - root])


def generate_problem(rng: random.Random, min_hops: int = 3, max_hops: int = 6) -> dict[str, Any]:
    """One problem in the real file's format (question, answer, steps, edges, idx_to_symbol, ...)."""
    for _ in range(1000):
        parents = grow_dag(rng, rng.randint(*NODES_DRAWN))
        if parents is None or sum(not ps for ps in parents) > len(PERSON_NAMES):
            continue
        children: list[list[int]] = [[] for _ in parents]
        for child, ps in enumerate(parents):
            for p in ps:
                children[p].append(child)
        picked = pick_question(rng, children, min_hops, max_hops)
        if picked is not None:
            break
    else:
        raise EnvError(
            f"env 'prosqa': no graph with a {min_hops}..{max_hops}-hop question in 1000 tries; "
            "graphs of this size have 3 to 6 hops, so choose env.args.min_hops and max_hops in that range"
        )
    root, target, neg_target = picked
    persons = {i for i, ps in enumerate(parents) if not ps}
    people, concepts = (
        iter(rng.sample(PERSON_NAMES, len(persons))),
        iter(rng.sample(CONCEPT_NAMES, len(parents) - len(persons))),
    )
    names = [next(people) if i in persons else next(concepts) for i in range(len(parents))]
    edges = [[p, child] for child, ps in enumerate(parents) for p in ps]
    facts = [sentence(names, a, b, persons) for a, b in edges]
    rng.shuffle(facts)
    options = [names[target], names[neg_target]]
    rng.shuffle(options)
    path = shortest_path(rng, children, root, target)
    return {
        "question": " ".join(facts) + f" Is {names[root]} a {options[0]} or {options[1]}?",
        "answer": f"{names[root]} is a {names[target]}.",
        "steps": [sentence(names, a, b, persons) for a, b in pairwise(path)],
        "idx_to_symbol": names,
        "edges": edges,
        "root": root,
        "target": target,
        "neg_target": neg_target,
    }


def problem_key(question: str) -> str:
    """The same string for two questions with the same facts and options, in any order."""
    parts = [s.strip() for s in re.findall(r"[^.?]+[.?]", question)]
    m = re.fullmatch(r"Is (\S+) a (\S+) or (\S+)\?", parts[-1]) if parts else None
    ask = f"{m.group(1)}:{','.join(sorted(m.groups()[1:]))}" if m else parts[-1] if parts else ""
    return "\n".join(sorted(parts[:-1])) + "\n" + ask


@functools.lru_cache(maxsize=4)
def validation_keys(path: str) -> frozenset[str]:
    """The problem keys of an evaluation file, read once per process."""
    return frozenset(
        problem_key(r["question"]) for r in read_json_list(Path(path), "prosqa") if "question" in r
    )


@dataclass
class ProsQA:
    """ProsQA problems: generated for `train`, read from the real file for evaluation."""

    cot: bool = False
    min_hops: int = 3
    max_hops: int = 6
    path: str | None = None
    train_path: str | None = None
    chain: str = "sentences"
    reward_funcs: list = field(default_factory=lambda: [exact_match])
    check: Callable = exact_match  # correct when it scores 1

    def __post_init__(self):
        if not 1 <= self.min_hops <= self.max_hops:
            raise ValueError(
                f"need 1 <= min_hops <= max_hops, got min_hops={self.min_hops}, max_hops={self.max_hops}"
            )
        if self.chain not in CHAINS:
            raise ValueError(f"chain must be one of {CHAINS}, got {self.chain!r}")
        if self.chain == "walk" and not self.cot:
            raise ValueError("chain='walk' is a written chain: it needs cot=True")

    def _rows(self, records: list[dict[str, Any]]) -> datasets.Dataset:
        def target(r: dict[str, Any]) -> str:
            return " ".join([*r["steps"], ANSWER_MARK, r["answer"]]) if self.cot else r["answer"]

        rows = {
            "prompt": [r["question"] for r in records],
            "answer": [r["answer"] for r in records],
            "completion": [target(r) for r in records],
            "steps": [list(r["steps"]) for r in records],
            # The pieces the chain-of-thought completion begins with (the RL curriculum's steps).
            "written_steps": [[f"{x} " for x in r["steps"]] if self.cot else [] for r in records],
        }
        if self.chain == "walk":
            walks = [walk_row(r) for r in records]
            for key in ("completion", "written_steps", "reachable", "reachable_weights"):
                rows[key] = [w[key] for w in walks]
        return datasets.Dataset.from_dict(rows)

    def load(self, path: str | None, arg: str) -> list[dict[str, Any]]:
        """The records of a file in the real format; rows missing a field are an EnvError."""
        file = data_path(path, VALID_FILE, "prosqa", arg)
        records = read_json_list(file, "prosqa")
        graph = ("idx_to_symbol", "edges", "root") if self.chain == "walk" else ()  # a walk needs the graph
        for i, r in enumerate(records):
            require_keys(r, ("question", "answer", "steps", *graph), file, i, "prosqa")
            require_text(r, ("question", "answer"), file, i, "prosqa")
            if not isinstance(r["steps"], list) or not all(isinstance(x, str) for x in r["steps"]):
                shown = repr(r["steps"])
                raise EnvError(
                    f"env 'prosqa': {str(file)!r} row {i}, key 'steps': expected a list of sentences (text), "
                    f"got {shown[:80]}{'...' if len(shown) > 80 else ''} ({type(r['steps']).__name__})"
                )
        return records

    def generate(self, n: int, seed: int) -> list[dict[str, Any]]:
        """`n` generated problems, none equal to a validation problem."""
        try:
            file = data_path(self.path, VALID_FILE, "prosqa")
        except EnvError:
            seen: frozenset[str] = frozenset()  # no validation file here: nothing to keep apart from
        else:
            seen = validation_keys(str(file))
        rng = random.Random(f"prosqa-train-{seed}")
        records = []
        while len(records) < n:
            record = generate_problem(rng, self.min_hops, self.max_hops)
            if problem_key(record["question"]) not in seen:
                records.append(record)
        return records

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        if split == "train":
            if self.train_path is not None:
                return self._rows(take(self.load(self.train_path, "train_path"), n, seed, shuffle=True))
            return self._rows(self.generate(n, seed))
        if split in EVAL_SPLITS:
            return self._rows(take(self.load(self.path, "path"), n, seed, shuffle=False))
        raise ValueError(f"split must be 'train' or one of {', '.join(EVAL_SPLITS)}, got {split!r}")


def walk_row(r: dict[str, Any]) -> dict[str, Any]:
    """A record's columns for `chain: walk`: a random walk of concept names down from the person, one
    name a step (one token each), as many steps as the shortest path has concepts before the answer,
    then `####` and the answer sentence; and what each step can reach (neuralese.envs.walks)."""
    names, kids, root = r["idx_to_symbol"], children_of(r["edges"]), r["root"]
    steps = len(r["steps"]) - 1
    walk = draw_walk(random.Random(r["question"]), kids, depths(kids, root), root, steps)
    written = [(" " if k else "") + names[n] for k, n in enumerate(walk)]
    reach, weights = frontier_columns(kids, root, steps, lambda k, n: (" " if k else "") + names[n])
    return {
        "completion": "".join(written) + (" " if written else "") + f"{ANSWER_MARK} {r['answer']}",
        "written_steps": written,
        "reachable": reach,
        "reachable_weights": weights,
    }


def make_prosqa(
    cot: bool = False,
    min_hops: int = 3,
    max_hops: int = 6,
    path: str | None = None,
    train_path: str | None = None,
    chain: str = "sentences",
) -> ProsQA:
    """ProsQA. `cot`: the stage-0 target is a chain, `####`, then the answer sentence: the shortest
    path's sentences (`chain: sentences`), or a random walk of concept names down from the person, one
    token a step, whose soft version is the breadth-first frontier (`chain: walk`; neuralese.envs.walks).
    `path`: the evaluation file (default `../shared/data/prosqa/prosqa_valid.json`);
    `train_path`: a training file in the same format instead of generated problems."""
    return ProsQA(
        cot=cot, min_hops=min_hops, max_hops=max_hops, path=path, train_path=train_path, chain=chain
    )


def question_stats(questions: list[str], steps: list[list[str]]) -> dict[str, float]:
    """Means over problems of: people, concepts (nodes), sentences (edges), hops and words."""
    nodes, persons, edges, words = [], [], [], []
    for q in questions:
        facts = re.findall(r"(?:Every (\w+)|([A-Z]\w*)) is a (\w+)\.", q)
        names = {a or b for a, b, _ in facts} | {c for _, _, c in facts}
        persons.append(len({b for _, b, _ in facts if b}))
        nodes.append(len(names))
        edges.append(len(facts))
        words.append(len(q.split()))
    n = len(questions)
    return {
        "nodes": sum(nodes) / n,
        "persons": sum(persons) / n,
        "edges": sum(edges) / n,
        "hops": sum(len(s) for s in steps) / n,
        "words": sum(words) / n,
    }
