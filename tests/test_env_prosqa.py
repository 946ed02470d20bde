"""ProsQA: generated problems are solvable (BFS over the graph read back from the text), match the
real validation split's statistics, never copy it; the real file loads; rewards score answers."""

from __future__ import annotations

import json
import re
import statistics
from collections import deque
from itertools import pairwise

import pytest

from neuralese.envs import env_texts, load_split, make_env
from neuralese.envs.files import SHARED_DATA
from neuralese.envs.prosqa import VALID_FILE, problem_key, question_stats
from neuralese.errors import EnvError
from neuralese.rewards.match import exact_match
from neuralese.tiny import build_tokenizer

REAL = SHARED_DATA / VALID_FILE
needs_real = pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} is not here")


@pytest.fixture(scope="module")
def generated():
    return make_env("prosqa").dataset("train", 600, seed=0)


@pytest.fixture(scope="module")
def real():
    return json.loads(REAL.read_text())


def parse(question: str) -> tuple[dict[str, set[str]], str, tuple[str, str], set[str]]:
    """(graph, person asked about, the two options, every stated sentence) from a question's text."""
    *facts, ask = re.findall(r"[^.?]+[.?]", question)
    facts = [f.strip() for f in facts]
    graph: dict[str, set[str]] = {}
    for fact in facts:
        m = re.fullmatch(r"(?:Every ([a-z]+)|([A-Z][a-z]+)) is a ([a-z]+)\.", fact)
        assert m, f"unexpected sentence {fact!r}"
        graph.setdefault(m.group(1) or m.group(2), set()).add(m.group(3))
    m = re.fullmatch(r"Is ([A-Z][a-z]+) a ([a-z]+) or ([a-z]+)\?", ask.strip())
    assert m, f"unexpected question {ask!r}"
    return graph, m.group(1), (m.group(2), m.group(3)), set(facts)


def distances(graph: dict[str, set[str]], source: str) -> dict[str, int]:
    dist, queue = {source: 0}, deque([source])
    while queue:
        u = queue.popleft()
        for v in graph.get(u, ()):
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def check_solvable(question: str, answer: str, steps: list[str]) -> int:
    """Assert the answer and steps follow from the text alone; returns the number of hops."""
    graph, person, options, facts = parse(question)
    dist = distances(graph, person)
    reached = [o for o in options if o in dist]
    assert len(reached) == 1, f"exactly one option must be reachable from {person}: {options}"
    assert answer == f"{person} is a {reached[0]}."
    # The steps are stated sentences that chain from the person to the answer, and no shorter chain exists.
    assert all(s in facts for s in steps)
    chain = [re.fullmatch(r"(?:Every )?(\w+) is a (\w+)\.", s).groups() for s in steps]
    assert chain[0][0] == person and chain[-1][1] == reached[0]
    assert all(a[1] == b[0] for a, b in pairwise(chain))
    assert len(steps) == dist[reached[0]]
    return len(steps)


def test_generated_problems_are_solvable_by_bfs(generated):
    hops = [check_solvable(r["prompt"], r["answer"], r["steps"]) for r in generated]
    assert min(hops) >= 3 and max(hops) <= 6
    # Both options come first about equally often, so position gives nothing away.
    first_is_right = [parse(r["prompt"])[2][0] in r["answer"] for r in generated]
    assert 0.4 < sum(first_is_right) / len(first_is_right) < 0.6


@needs_real
def test_the_checker_accepts_every_real_problem(real):
    # The same independent check holds on the real data, so it checks the rules and not our own quirks.
    for r in real:
        check_solvable(r["question"], r["answer"], r["steps"])


@needs_real
def test_generator_statistics_match_the_real_validation_split(generated, real):
    ours = question_stats(generated["prompt"], generated["steps"])
    theirs = question_stats([r["question"] for r in real], [r["steps"] for r in real])
    # Means within 5% (the real split's own standard error is about 1% for each of them).
    for key in ("nodes", "persons", "edges", "hops", "words"):
        assert ours[key] == pytest.approx(theirs[key], rel=0.05), (key, ours[key], theirs[key])
    # The spread of the graph size and the mix of hop counts match too.
    sizes_ours = [len(q.split()) for q in generated["prompt"]]
    sizes_theirs = [len(r["question"].split()) for r in real]
    assert statistics.pstdev(sizes_ours) == pytest.approx(statistics.pstdev(sizes_theirs), rel=0.2)
    for h in (3, 4):
        share_ours = sum(len(s) == h for s in generated["steps"]) / len(generated)
        share_theirs = sum(len(r["steps"]) == h for r in real) / len(real)
        assert abs(share_ours - share_theirs) < 0.1, (h, share_ours, share_theirs)  # about 3 standard errors


@needs_real
def test_generated_training_problems_never_copy_validation_problems(generated, real):
    validation = {problem_key(r["question"]) for r in real}
    assert len(validation) == len(real)  # the key tells real problems apart
    assert not validation & {problem_key(q) for q in generated["prompt"]}
    # The key ignores sentence order and option order: a shuffled copy is still caught.
    sentences = re.findall(r"[^.?]+[.?]", real[0]["question"])
    reordered = " ".join(s.strip() for s in sentences[-2::-1]) + " " + sentences[-1].strip()
    assert problem_key(reordered) in validation


@needs_real
def test_real_split_loads_in_file_order_with_cot_targets(real):
    env = make_env("prosqa", {"cot": True})
    ds = load_split(env, "valid", 1000, seed=3, name="prosqa")
    assert len(ds) == len(real) == 300
    assert (
        ds[0]["prompt"] == real[0]["question"] and ds[0]["answer"] == real[0]["answer"] == "Tom is a lempus."
    )
    assert ds[0]["completion"] == " ".join(real[0]["steps"]) + " #### Tom is a lempus."
    # The teacher's chain of thought scores 1; the wrong option scores 0.
    assert exact_match(ds["prompt"], ds["completion"], answer=ds["answer"]) == [1.0] * 300
    wrong = [f"Tom is a {parse(real[0]['question'])[2][1]}."]
    assert exact_match([ds[0]["prompt"]], wrong, answer=[ds[0]["answer"]]) == [0.0]
    assert make_env("prosqa").dataset("test", 5, seed=0)["prompt"] == ds["prompt"][:5]


@needs_real
def test_tokenizer_from_generated_problems_reads_the_real_split(generated, real):
    tok = build_tokenizer(env_texts(generated))
    texts = (
        [r["question"] for r in real] + [r["answer"] for r in real] + [s for r in real for s in r["steps"]]
    )
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, text
        assert tok.decode(ids) == text


def test_training_data_is_seeded_and_hops_are_configurable():
    env = make_env("prosqa", {"min_hops": 5, "max_hops": 5})
    a, b = env.dataset("train", 20, seed=1), env.dataset("train", 20, seed=1)
    assert a["prompt"] == b["prompt"] and a["prompt"] != env.dataset("train", 20, seed=2)["prompt"]
    assert {check_solvable(r["prompt"], r["answer"], r["steps"]) for r in a} == {5}


def test_missing_file_and_bad_split_are_clear(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(
        EnvError,
        match=rf"env 'prosqa': data file '{re.escape(str(missing))}' does not exist; .*env.args.path",
    ):
        make_env("prosqa", {"path": str(missing)}).dataset("valid", 5, seed=0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "Is Tom a a or b?", "answer": "Tom is a a."}]))
    with pytest.raises(EnvError, match=r"row 0 has keys \['answer', 'question'\], missing \['steps'\]"):
        make_env("prosqa", {"path": str(bad)}).dataset("valid", 5, seed=0)
    with pytest.raises(
        EnvError,
        match=r"dataset\('dev', n=5, seed=0\) failed: ValueError: split must be 'train' or one of valid",
    ):
        load_split(make_env("prosqa"), "dev", 5, seed=0, name="prosqa")


@pytest.mark.parametrize("split", ["train", pytest.param("valid", marks=needs_real)])
def test_walk_chain_writes_one_concept_a_depth_and_each_steps_frontier(split):
    from neuralese.tiny import text_pieces

    rows = make_env("prosqa", {"cot": True, "chain": "walk"}).dataset(split, 150, seed=0)
    plain = make_env("prosqa", {"cot": True}).dataset(split, 150, seed=0)
    assert rows["prompt"] == plain["prompt"] and rows["answer"] == plain["answer"]
    wide = 0
    for row in rows:
        graph, person, _, _ = parse(row["prompt"])
        dist = distances(graph, person)
        walk = [w.strip() for w in row["written_steps"]]
        assert len(walk) == len(row["steps"]) - 1 == len(row["reachable"])
        assert row["completion"] == " ".join([*walk, "####", row["answer"]])
        # Each written step is one piece after the prompt, so a thought stands in for exactly one token.
        pieces = text_pieces(row["prompt"] + row["completion"])
        assert all(step in pieces for step in row["written_steps"])
        before = person
        for depth, (node, reach, weights) in enumerate(
            zip(walk, row["reachable"], row["reachable_weights"]), 1
        ):
            here = sorted(n for n, d in dist.items() if d == depth)
            assert sorted(r.strip() for r in reach) == here and node in here
            assert all(r == (" " if depth > 1 else "") + r.strip() for r in reach)  # as the step writes it
            assert sum(weights) == pytest.approx(1) and min(weights) > 0
            kids = [c for c in graph.get(before, ()) if dist[c] == depth]
            assert node in kids or not kids  # down an edge when one leads to this depth
            before, wide = node, wide + (len(here) > 1)
    assert wide > len(rows)  # frontiers hold several concepts at once


def test_walk_chain_needs_cot_and_a_file_with_the_graph(tmp_path):
    with pytest.raises(EnvError, match="needs cot=True"):
        make_env("prosqa", {"chain": "walk"})
    bad = tmp_path / "nograph.json"
    bad.write_text(json.dumps([{"question": "Is Tom a a or b?", "answer": "Tom is a a.", "steps": []}]))
    with pytest.raises(EnvError, match=r"row 0 has keys .*missing \['idx_to_symbol', 'edges', 'root'\]"):
        make_env("prosqa", {"cot": True, "chain": "walk", "path": str(bad)}).dataset("valid", 1, seed=0)
