"""Countdown: every target is reachable (an independent brute force agrees), the teacher's expression
solves it, and the reward's parser accepts only honest expressions of the given numbers."""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import pytest

from neuralese.envs import env_texts, make_env
from neuralese.rewards.countdown import ExpressionError, countdown_match, evaluate
from neuralese.tiny import build_tokenizer


@cache
def all_values(numbers: tuple[int, ...]) -> frozenset[Fraction]:
    """Every exact value of every expression using each number once (fractions allowed), by brute force:
    pick any two items, replace them by any result, recurse."""
    if len(numbers) == 1:
        return frozenset({Fraction(numbers[0])})
    return _values(tuple(sorted(Fraction(x) for x in numbers)))


@cache
def _values(items: tuple[Fraction, ...]) -> frozenset[Fraction]:
    if len(items) == 1:
        return frozenset(items)
    out: set[Fraction] = set()
    for i in range(len(items)):
        for j in range(len(items)):
            if i == j:
                continue
            a, b = items[i], items[j]
            rest = [x for k, x in enumerate(items) if k not in (i, j)]
            results = [a + b, a - b, a * b] + ([a / b] if b != 0 else [])
            for r in results:
                out |= _values(tuple(sorted([*rest, r])))
    return frozenset(out)


@pytest.mark.parametrize("args", [{"count": 3, "max_number": 10, "max_target": 30}, {"count": 4}])
def test_targets_are_reachable_and_the_teacher_solves_them(args):
    ds = make_env("countdown", args).dataset("train", 60 if args["count"] == 3 else 20, seed=0)
    for row in ds:
        numbers, target = row["numbers"], int(row["answer"])
        assert len(numbers) == args["count"] and all(1 <= x <= args.get("max_number", 25) for x in numbers)
        assert 1 <= target <= args.get("max_target", 100)
        assert Fraction(target) in all_values(tuple(numbers))
        assert row["prompt"] == f"Use {' '.join(map(str, numbers))} to make {target}:"
        value, used = evaluate(row["completion"])
        assert value == target and sorted(used) == sorted(numbers)
    assert countdown_match(ds["prompt"], ds["completion"], numbers=ds["numbers"], answer=ds["answer"]) == [
        1.0
    ] * len(ds)


def test_targets_spread_over_the_range_and_splits_are_disjoint():
    env = make_env("countdown", {"count": 3, "max_number": 10, "max_target": 30})
    train = env.dataset("train", 600, seed=0)
    test = env.dataset("test", 150, seed=0)
    assert len({int(a) for a in train["answer"]}) >= 25  # not just the easy small targets
    key = lambda ds: {(tuple(sorted(n)), a) for n, a in zip(ds["numbers"], ds["answer"], strict=True)}  # noqa: E731
    assert not key(train) & key(test)


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("(7-5)*12", 1.0),
        ("12*(7-5) = 24", 1.0),  # a trailing "= target" is fine
        ("  ( 7 - 5 ) × 12 ", 1.0),
        ("reasoning... #### (7-5)*12", 1.0),  # the part after the answer marker
        ("12/(7-5)*4", 0.0),  # 4 is not a given number
        ("(7-5)*12*1", 0.0),
        ("7*5-12+1", 0.0),
        ("12+7-5", 0.0),  # right numbers, wrong value
        ("(7-5)*(12)*(7-7+1)", 0.0),  # a number used twice
        ("7-5*12", 0.0),  # precedence is honoured: 7-60
        ("-(5-7)*12", 0.0),  # no unary minus
        ("12*2", 0.0),  # numbers missing
        ("(7-5)*12)", 0.0),
        ("((7-5)*12", 0.0),
        ("12/(5-5)+7", 0.0),  # division by zero is simply wrong
        ("__import__('os').system('true')", 0.0),
        ("24", 0.0),
        ("", 0.0),
    ],
)
def test_reward_on_known_completions(completion, expected):
    assert countdown_match([""], [completion], numbers=[[5, 7, 12]], answer=["24"]) == [expected]


def test_fractional_steps_count_and_conversations_are_read():
    assert countdown_match([""], ["8/(3-8/3)"], numbers=[[3, 3, 8, 8]], answer=["24"]) == [1.0]
    convo = [{"role": "assistant", "content": "(7-5)*12"}]
    assert countdown_match([""], [convo], numbers=[[5, 7, 12]], answer=["24"]) == [1.0]


@pytest.mark.parametrize("text", ["1+" * 150 + "1", "(" * 40 + "1" + ")" * 40, "2**3", "1 2", "3.5*2"])
def test_parser_refuses_long_deep_and_foreign_input(text):
    with pytest.raises(ExpressionError):
        evaluate(text)


def test_tokenizer_round_trips_countdown_text():
    env = make_env("countdown")
    tok = build_tokenizer(env_texts(env.dataset("train", 200, seed=0)))
    for text in env_texts(env.dataset("test", 100, seed=0)):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids and tok.decode(ids) == text
