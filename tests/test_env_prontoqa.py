"""ProntoQA: answers follow from the rules by forward chaining over the text, at the stated depth."""

from __future__ import annotations

import re

import pytest

from neuralese.envs import env_texts, make_env
from neuralese.envs.prontoqa import problem_key
from neuralese.rewards.match import exact_match
from neuralese.tiny import build_tokenizer

RULE = re.compile(r"Every (\w+) is (not )?(a )?(\w+)\.")
FACT = re.compile(r"([A-Z]\w+) is a (\w+)\.")
ASK = re.compile(r"True or false: ([A-Z]\w+) is (not )?(a )?(\w+)\.")


def prove(prompt: str) -> tuple[str, int]:
    """("True"/"False", hops) derived from the text alone by forward chaining, breadth first."""
    facts_text, _, ask = prompt.partition(" True or false: ")
    sentences = re.findall(r"[^.]+\.", facts_text)
    rules: dict[str, list[tuple[str, bool]]] = {}
    start = None
    for s in (x.strip() for x in sentences):
        if m := RULE.fullmatch(s):
            rules.setdefault(m.group(1), []).append((m.group(4), m.group(2) is None))
        elif m := FACT.fullmatch(s):
            entity, start = m.groups()
        else:
            raise AssertionError(f"unexpected sentence {s!r}")
    m = ASK.fullmatch("True or false: " + ask)
    assert m and m.group(1) == entity, ask
    asked_positive, target = m.group(2) is None, m.group(4)
    # Literals (name, polarity) that hold for the entity, with the rule applications needed.
    depth = {(start, True): 0}
    frontier = [start]
    while frontier:
        nxt = []
        for concept in frontier:
            for obj, positive in rules.get(concept, ()):
                if (obj, positive) not in depth:
                    depth[(obj, positive)] = depth[(concept, True)] + 1
                    if positive:
                        nxt.append(obj)
        frontier = nxt
    holds = [p for (name, p) in depth if name == target]
    assert len(holds) == 1, f"{target!r} must be decided exactly once, got {holds}"
    return ("True" if holds[0] == asked_positive else "False"), depth[(target, holds[0])]


@pytest.mark.parametrize("hops, query", [(5, "mixed"), (1, "concept"), (3, "property"), (8, "mixed")])
def test_answers_follow_from_the_rules(hops, query):
    ds = make_env("prontoqa", {"hops": hops, "query": query, "cot": True}).dataset("train", 200, seed=hops)
    for row in ds:
        answer, depth = prove(row["prompt"])
        assert answer == row["answer"] and depth == hops
        # The proof names the entity's chain in order and ends in the answer.
        assert row["completion"] == " ".join(row["steps"]) + " #### " + row["answer"]
        assert len(row["steps"]) == 2 * hops + 1
    share_true = ds["answer"].count("True") / len(ds)
    assert 0.4 < share_true < 0.6
    asks_concept = [" a " in p.split("True or false: ")[1] for p in ds["prompt"]]
    if query != "mixed":
        assert all(asks_concept) == (query == "concept") and any(asks_concept) == (query == "concept")
    else:
        assert 0.3 < sum(asks_concept) / len(ds) < 0.7


def test_the_queried_word_alone_does_not_give_the_answer():
    # The side chain states the opposite of the real last rule, so the queried word appears
    # once with each polarity: the answer depends on which chain reaches the entity.
    ds = make_env("prontoqa").dataset("test", 100, seed=0)
    for prompt in ds["prompt"]:
        facts, _, ask = prompt.partition(" True or false: ")
        target = ask.rstrip(".").split()[-1]
        stated = [m.group(2) is None for m in RULE.finditer(facts) if m.group(4) == target]
        assert sorted(stated) == [False, True]


def test_splits_are_disjoint_and_rewards_score_answers():
    env = make_env("prontoqa", {"hops": 2})
    train = env.dataset("train", 1000, seed=0)
    test = env.dataset("test", 300, seed=0)
    assert not {problem_key(p) for p in train["prompt"]} & {problem_key(p) for p in test["prompt"]}
    flipped = ["False" if a == "True" else "True" for a in test["answer"]]
    assert exact_match(test["prompt"], test["completion"], answer=test["answer"]) == [1.0] * 300
    assert exact_match(test["prompt"], flipped, answer=test["answer"]) == [0.0] * 300


def test_tokenizer_round_trips_prontoqa_text():
    env = make_env("prontoqa", {"cot": True})
    tok = build_tokenizer(env_texts(env.dataset("train", 300, seed=0)))
    for text in env_texts(env.dataset("test", 100, seed=0)):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids and tok.decode(ids) == text


@pytest.mark.parametrize(
    "args, fragment", [({"hops": 0}, "hops must be an integer from 1"), ({"query": "both"}, "query must be")]
)
def test_bad_arguments_are_named(args, fragment):
    from neuralese.errors import EnvError

    with pytest.raises(EnvError, match=f"env 'prontoqa': the factory rejected env.args .*{fragment}"):
        make_env("prontoqa", args)
