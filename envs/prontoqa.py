"""ProntoQA: true/false questions over a fictional ontology, `hops` rule applications deep.

ProntoQA (Saparov and He, 2023) asks whether a statement about an entity follows from
a small set of rules over made-up concepts. A problem here has

- a chain: "Max is a jompus." then "Every jompus is a wumpus." ... down `hops - 1`
  subset rules, and one last rule that states, positively or negated, what the last
  concept is: another concept ("Every tumpus is not a zumpus.") or a property
  ("Every tumpus is shy.");
- distractors, as in ProntoQA: a property rule on each inner concept of the chain, and
  a two-concept side chain ending in the opposite of the last rule ("Every gorpus is a
  lempus. Every lempus is a zumpus."), which Max never reaches. A model that only looks
  for the queried word therefore cannot tell the answer;
- the question "True or false: Max is not a zumpus." (either polarity), answer `True`
  or `False`, balanced.

Sentences are shuffled (the original orders them along the ontology): the model has to
find the chain. Train and test problems are disjoint: a problem belongs to the test
split when a fixed hash of its sentences and question falls in the lowest fifth.

    >>> row = make_prontoqa(hops=2).dataset("train", 1, seed=0)[0]
    >>> row["prompt"].split(" True or false: ")[1].endswith("."), row["answer"] in ("True", "False")
    (True, True)
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import datasets

from neuralese.envs.files import stable_fraction
from neuralese.envs.prosqa import CONCEPT_NAMES
from neuralese.rewards.match import ANSWER_MARK, exact_match

TEST_FRACTION = 0.2
ENTITY_NAMES = "Alex Fae Max Polly Rex Sally Sam Stella Wren".split()
PROPERTIES = (
    "aggressive amenable bitter blue bright brown cold dull earthy feisty floral fruity happy hot kind large "
    "liquid luminous mean metallic nervous opaque orange red sad shy small sour spicy sweet transparent wooden"
).split()


def rule(subject: str, obj: str, positive: bool, is_concept: bool) -> str:
    """ "Every X is a Y." / "Every X is not a Y." / "Every X is P." / "Every X is not P."."""
    return f"Every {subject} is {'' if positive else 'not '}{'a ' if is_concept else ''}{obj}."


def claim(entity: str, obj: str, positive: bool, is_concept: bool) -> str:
    """ "Max is a Y." and its variants, without the final period."""
    return f"{entity} is {'' if positive else 'not '}{'a ' if is_concept else ''}{obj}"


def generate_problem(rng: random.Random, hops: int, query: str) -> dict[str, Any]:
    """One problem: `question` (shuffled facts + question), `answer`, `steps` (the proof)."""
    entity = rng.choice(ENTITY_NAMES)
    names = rng.sample(CONCEPT_NAMES, hops + 3)
    chain, side, last = names[:hops], names[hops : hops + 2], names[hops + 2]
    is_concept = query == "concept" or (query == "mixed" and rng.random() < 0.5)
    extras = rng.sample(PROPERTIES, hops)  # the last one may be the queried property
    target = last if is_concept else extras[-1]
    holds = rng.random() < 0.5  # polarity of the chain's last rule
    facts = [f"{entity} is a {chain[0]}."]
    facts += [rule(a, b, True, True) for a, b in pairwise(chain)]
    facts.append(rule(chain[-1], target, holds, is_concept))
    facts += [
        rule(c, p, rng.random() < 0.5, False) for c, p in zip(chain[:-1], extras[: hops - 1], strict=True)
    ]
    facts += [rule(side[0], side[1], True, True), rule(side[1], target, not holds, is_concept)]
    rng.shuffle(facts)
    asked = rng.random() < 0.5  # polarity of the question
    steps = [f"{entity} is a {chain[0]}."]
    for a, b in pairwise(chain):
        steps += [rule(a, b, True, True), f"{entity} is a {b}."]
    steps += [rule(chain[-1], target, holds, is_concept), claim(entity, target, holds, is_concept) + "."]
    return {
        "question": " ".join(facts) + f" True or false: {claim(entity, target, asked, is_concept)}.",
        "answer": "True" if asked == holds else "False",
        "steps": steps,
    }


def problem_key(question: str) -> str:
    """The same string for two questions with the same facts and question, in any order."""
    facts, _, asked = question.partition(" True or false: ")
    return "\n".join(sorted(re.findall(r"[^.]+\.", facts))) + "\n" + asked


@dataclass
class ProntoQA:
    """ProntoQA-style problems with `hops` rule applications between the entity and the answer."""

    hops: int = 5
    query: Literal["mixed", "concept", "property"] = "mixed"
    cot: bool = False
    reward_funcs: list = field(default_factory=lambda: [exact_match])
    check: Callable = exact_match  # correct when it scores 1

    def __post_init__(self):
        if not isinstance(self.hops, int) or not 1 <= self.hops <= len(CONCEPT_NAMES) - 3:
            raise ValueError(f"hops must be an integer from 1 to {len(CONCEPT_NAMES) - 3}, got {self.hops!r}")
        if self.query not in ("mixed", "concept", "property"):
            raise ValueError(f"query must be 'mixed', 'concept' or 'property', got {self.query!r}")

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        if split not in ("train", "test", "validation"):
            raise ValueError(f"split must be 'train', 'test' or 'validation', got {split!r}")
        want_test = split != "train"
        rng = random.Random(f"prontoqa-{seed}-{split}-{self.hops}-{self.query}")
        rows: dict[str, list] = {
            "prompt": [],
            "answer": [],
            "completion": [],
            "steps": [],
            "written_steps": [],
        }
        while len(rows["prompt"]) < n:
            p = generate_problem(rng, self.hops, self.query)
            if (stable_fraction(problem_key(p["question"])) < TEST_FRACTION) != want_test:
                continue
            rows["prompt"].append(p["question"])
            rows["answer"].append(p["answer"])
            rows["completion"].append(
                " ".join([*p["steps"], ANSWER_MARK, p["answer"]]) if self.cot else p["answer"]
            )
            rows["steps"].append(p["steps"])
            rows["written_steps"].append([f"{x} " for x in p["steps"]] if self.cot else [])
        return datasets.Dataset.from_dict(rows)


def make_prontoqa(hops: int = 5, query: str = "mixed", cot: bool = False) -> ProntoQA:
    """ProntoQA with `hops` rule applications. `query`: ask about a `concept`, a `property`, or
    either (`mixed`). `cot`: the stage-0 target is the proof, `####`, then True/False."""
    return ProntoQA(hops=hops, query=query, cot=cot)  # type: ignore[arg-type]
