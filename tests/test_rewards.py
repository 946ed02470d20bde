"""Reward functions and their composition: values by hand, and one clear message for every bad plug-in."""

from __future__ import annotations

import asyncio
import math
import textwrap

import numpy as np
import pytest

from neuralese.errors import ConfigError, RewardError
from neuralese.rewards.combine import builtin_rewards, compute_rewards, resolve_reward
from neuralese.rewards.shaping import format_match, length_penalty, thought_penalty

PROMPTS = ["p0", "p1", "p2"]
COMPLETIONS = ["#### 1", "#### 2", "three"]
COLUMNS = {"answer": ["1", "2", "3"]}


def call(funcs, weights=None, columns=None, timeout_s=5.0):
    return compute_rewards(
        funcs, weights or [1.0] * len(funcs), PROMPTS, COMPLETIONS, columns or COLUMNS, timeout_s
    )


def test_weighted_sum_skips_none_and_keeps_each_function():
    def half(prompts, completions, **_):
        return [0.5, None, 0.5]

    total, parts = call([builtin_rewards()["exact_match"], half], weights=[2.0, -1.0])
    assert total.tolist() == [1.5, 2.0, -0.5]  # 2*[1,1,0] - [0.5, (none), 0.5]
    assert parts["exact_match"].tolist() == [1.0, 1.0, 0.0]
    assert math.isnan(parts["half"][1].item())


def test_the_same_function_twice_with_different_args_is_logged_twice():
    a = resolve_reward("length_penalty", {"max_tokens": 2, "buffer_tokens": 1})
    b = resolve_reward("length_penalty", {"max_tokens": 3, "buffer_tokens": 1})
    _, parts = call([a, b])
    assert list(parts) == ["length_penalty", "length_penalty'"]
    # "#### 1" is two words: over the 1 free word of the first, within the 2 of the second.
    assert parts["length_penalty"].tolist() == [-1.0, -1.0, 0.0]
    assert parts["length_penalty'"].tolist() == [0.0, 0.0, 0.0]


def test_a_callable_object_is_logged_by_its_class_name():
    class Scorer:
        def __call__(self, prompts, completions, **kw):
            return [float(len(c)) for c in completions]

    total, parts = call([Scorer()])
    assert list(parts) == ["Scorer"] and total.tolist() == [6.0, 6.0, 5.0]


def test_async_functions_are_awaited_and_numpy_floats_accepted():
    async def judge(prompts, completions, answer, **_):
        await asyncio.sleep(0)
        return [np.float32(1.0) if c.endswith(a) else 0.0 for c, a in zip(completions, answer, strict=True)]

    total, _ = call([judge])
    assert total.tolist() == [1.0, 1.0, 0.0]


def test_trainer_keyword_arguments_reach_the_penalties():
    columns = {
        **COLUMNS,
        "completion_ids": [[1] * 5, [1] * 7, [1] * 9],
        "num_thoughts": [0, 4, 8],
        "generated_positions": [5, 11, 17],
    }
    funcs = [
        resolve_reward(n, a)
        for n, a in [
            ("exact_match", None),
            ("length_penalty", {"max_tokens": 8, "buffer_tokens": 2}),
            ("thought_penalty", {"per_thought": 0.25, "free_thoughts": 4}),
        ]
    ]
    total, parts = call(funcs, columns=columns)
    assert parts["length_penalty"].tolist() == [0.0, -0.5, -1.0]
    assert parts["thought_penalty"].tolist() == [0.0, 0.0, -1.0]
    assert total.tolist() == [1.0, 0.5, -2.0]


def test_every_builtin_reward_runs_on_a_batch_with_unrelated_columns():
    columns = {
        **COLUMNS,
        "numbers": [[1], [2], [3]],
        "extra": ["x", "y", "z"],
        "completion_ids": [[1], [2], [3]],
        "num_thoughts": [1, 1, 1],
    }
    for name, fn in builtin_rewards().items():
        total, _ = call([fn], columns=columns)
        assert total.shape == (3,), name


@pytest.mark.parametrize(
    "fn_text, fragment",
    [
        (
            "def bad(prompts, completions, **kw):\n    return [1.0]",
            "reward function 'bad' returned 1 values for 3 completions; expected one float or None per completion",
        ),
        (
            "def bad(prompts, completions, **kw):\n    return [1.0, float('nan'), 0.0]",
            "reward function 'bad' returned nan for sample 1 (prompt 'p1', completion '#### 2'); rewards must be finite",
        ),
        (
            "def bad(prompts, completions, **kw):\n    return [1.0, 0.0, 'high']",
            "reward function 'bad' returned 'high' (str) for sample 2 (prompt 'p2', completion 'three'); expected a float or None",
        ),
        (
            "def bad(prompts, completions, **kw):\n    return [True, 0.0, 0.0]",
            "returned True (bool) for sample 0",
        ),
        (
            "def bad(prompts, completions, **kw):\n    return 1.0",
            "reward function 'bad' returned float; expected a list of float or None",
        ),
        (
            "def bad(prompts, completions, answer, **kw):\n    return [float(int(c.split()[-1])) for c in completions]",
            "reward function 'bad' raised ValueError: invalid literal for int() with base 10: 'three' on sample 2 (prompt 'p2', completion 'three')",
        ),
        (
            "def bad(prompts, completions, solution, **kw):\n    return [0.0] * len(completions)",
            "reward function 'bad' takes 'solution', which is not a column of the batch; its columns: answer "
            "(the dataset's, and completion_ids, num_thoughts, generated_positions;",
        ),
    ],
)
def test_bad_reward_functions_end_in_one_clear_message(tmp_path, fn_text, fragment):
    path = tmp_path / "plugin.py"
    path.write_text(fn_text + "\n")
    fn = resolve_reward(f"{path}:bad")
    with pytest.raises(RewardError) as e:
        call([fn])
    assert fragment in str(e.value)


def test_a_hung_reward_times_out_with_its_name():
    import time

    def slow(prompts, completions, **_):
        time.sleep(2)
        return [0.0] * len(completions)

    with pytest.raises(
        RewardError, match=r"reward function 'slow' did not return within 0.2 s \(rl.reward_timeout_s\)"
    ):
        call([slow], timeout_s=0.2)


def test_plugin_references_that_do_not_resolve(tmp_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(
        ConfigError, match=rf"rewards\[0\].fn: reward function file '{missing}' does not exist"
    ):
        resolve_reward(f"{missing}:fn", key="rewards[0].fn")
    with pytest.raises(ConfigError, match=r"rewards: cannot import reward function module 'no_such_pkg.mod'"):
        resolve_reward("no_such_pkg.mod:fn")
    (tmp_path / "plug.py").write_text(
        "x = 3\ndef f(prompts, completions, **kw):\n    return [0.0] * len(completions)\n"
    )
    with pytest.raises(ConfigError, match=r"reward function '.*plug.py' has no attribute 'g'"):
        resolve_reward(f"{tmp_path / 'plug.py'}:g")
    with pytest.raises(ConfigError, match=r"reward function '.*plug.py:x' is not callable"):
        resolve_reward(f"{tmp_path / 'plug.py'}:x")
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(
        ConfigError, match=r"importing reward function file '.*broken.py' failed: ModuleNotFoundError"
    ):
        resolve_reward(f"{tmp_path / 'broken.py'}:f")
    with pytest.raises(
        ConfigError, match=r"unknown reward function 'exact_mach'; did you mean 'exact_match'\?"
    ):
        resolve_reward("exact_mach")


def test_misspelt_reward_args_are_refused_not_swallowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        resolve_reward("length_penalty", {"max_token": 10}, key="rewards[1].fn")  # the key build.py gives
    assert str(e.value) == (
        "rewards[1].args: reward function 'length_penalty' has no parameter 'max_token'; "
        "its parameters are: completion_ids, max_tokens, buffer_tokens"
    )
    (tmp_path / "plug.py").write_text(
        textwrap.dedent("""
        def scaled(prompts, completions, scale=1.0, **kw):
            return [scale] * len(completions)
    """)
    )
    fn = resolve_reward(f"{tmp_path / 'plug.py'}:scaled", {"scale": 0.5})
    assert fn.__name__ == "scaled" and fn([""], ["a"]) == [0.5]


def test_bad_arguments_of_builtin_rewards_are_named():
    with pytest.raises(
        RewardError, match=r"'format_match' raised ValueError: pattern '\(' is not a valid regular expression"
    ):
        call([resolve_reward("format_match", {"pattern": "("})])
    with pytest.raises(
        RewardError, match=r"'length_penalty' raised ValueError: need 1 <= buffer_tokens <= max_tokens"
    ):
        call([resolve_reward("length_penalty", {"max_tokens": 4, "buffer_tokens": 8})])
    with pytest.raises(
        RewardError, match=r"'numeric_match' raised ValueError: answer 'many' is not a number on sample 1"
    ):
        call([builtin_rewards()["numeric_match"]], columns={"answer": ["1", "many", "3"]})


def test_shaping_rewards_by_hand():
    assert format_match(["", "", ""], ["x #### 4", "####", "4"]) == [1.0, 0.0, 0.0]
    assert format_match([""], ["True"], pattern="True|False") == [1.0]
    assert format_match([""], ["True."], pattern="True|False") == [0.0]  # the whole completion must match
    # Without token ids, lengths are words.
    assert length_penalty([""] * 3, ["a b c", "a b c d e", "a " * 9], max_tokens=6, buffer_tokens=2) == [
        0.0,
        -0.5,
        -1.0,
    ]
    assert thought_penalty([""] * 2, ["", ""], num_thoughts=[3, 0], per_thought=0.1) == [
        pytest.approx(-0.3),
        0.0,
    ]
