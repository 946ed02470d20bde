"""Multiplication (and addition): every size works, answers and the implicit-CoT target recompute."""

from __future__ import annotations

import re

import pytest

from neuralese.envs import make_env
from neuralese.errors import EnvError
from neuralese.rewards.match import exact_match


def unrev(text: str) -> int:
    return int(text[::-1])


def parse_cot(cot: str) -> tuple[list[str], list[str], str]:
    """(partials, running sums, final answer) of a CoT text, read with a regex of its own."""
    body, _, final = cot.partition("####")
    partials, sums = [], []
    for part in body.split("+"):
        m = re.fullmatch(r"(\d+)(?:\((\d+)\))?", part)
        assert m, f"malformed CoT part {part!r} in {cot!r}"
        partials.append(m.group(1))
        if m.group(2):
            sums.append(m.group(2))
    return partials, sums, final


@pytest.mark.parametrize("da, db", [(d, d) for d in range(2, 10)] + [(3, 5), (7, 2)])
def test_multiplication_sizes_and_cot_recompute(da: int, db: int):
    env = make_env("multiplication", {"digits": da, "digits_b": db, "cot": True})
    ds = env.dataset("train", 40, seed=da * 10 + db)
    for row in ds:
        a_text, b_text = row["prompt"].rstrip("=").split("*")
        assert (len(a_text), len(b_text)) == (da, db)
        a, b = unrev(a_text), unrev(b_text)
        assert len(str(a)) == da and len(str(b)) == db  # no leading zero in the true number
        assert unrev(row["answer"]) == a * b and row["answer"] == str(a * b)[::-1]
        partials, sums, final = parse_cot(row["completion"])
        assert final == row["answer"]
        assert len(partials) == db and len(sums) == max(0, db - 2)
        total = 0
        for j, (part, digit) in enumerate(zip(partials, str(b)[::-1], strict=True)):
            assert len(part) == da + 1 + j  # fixed width: a digit's position is its place value
            assert unrev(part) == a * int(digit) * 10**j
            total += unrev(part)
            if 0 < j < db - 1:
                assert len(sums[j - 1]) == da + 1 + j and unrev(sums[j - 1]) == total
        assert total == a * b
    # The teacher's CoT scores 1 with the environment's own correctness reward.
    assert exact_match(ds["prompt"], ds["completion"], answer=ds["answer"]) == [1.0] * len(ds)


def test_multiplication_cot_matches_a_line_of_deng_et_al():
    # "1 3 4 5 * 8 1 9 3||8 4 4 3 4 + 0 1 3 4 5 0 ( 8 5 7 7 9 0 ) + 0 0 9 7 8 8 4 ( 8 5 6 5 8 9 4 )
    #  + 0 0 0 3 9 2 6 1 #### 8 5 6 8 7 2 1 2" from their 4x4 data, spaces removed.
    from neuralese.envs.arithmetic import multiplication_cot

    assert multiplication_cot(5431, 3918) == "84434+013450(857790)+0097884(8565894)+00039261####85687212"
    # A zero digit gives an all-zero partial of full width.
    assert multiplication_cot(7316, 1570).split("+")[0] == "00000"


def test_train_and_test_problems_are_disjoint():
    env = make_env("multiplication", {"digits": 2})
    train = set(env.dataset("train", 1500, seed=0)["prompt"])
    test = set(env.dataset("test", 400, seed=0)["prompt"])
    assert train and test and not train & test


def test_no_cot_target_is_the_answer_and_rewards_reject_wrong_products():
    ds = make_env("multiplication", {"digits": 3}).dataset("test", 20, seed=1)
    assert ds["completion"] == ds["answer"]
    wrong = [str(unrev(a) + 1)[::-1] for a in ds["answer"]]
    assert exact_match(ds["prompt"], wrong, answer=ds["answer"]) == [0.0] * 20


@pytest.mark.parametrize("args", [{"digits": 10}, {"digits": 0}, {"digits": 2, "digits_b": 12}])
def test_out_of_range_sizes_fail_with_the_argument_named(args):
    with pytest.raises(
        EnvError,
        match=r"env 'multiplication': the factory rejected env.args .*digits(_b)? must be an integer from 1 to 9",
    ):
        make_env("multiplication", args)
