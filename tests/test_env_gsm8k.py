"""GSM8K: the loader reads the real files, the reward reads the real answer format and people's
ways of writing numbers, and bad files end in one message naming the file and row."""

from __future__ import annotations

import json
import re

import pytest

from neuralese.envs import env_texts, load_split, make_env
from neuralese.envs.files import SHARED_DATA
from neuralese.errors import EnvError
from neuralese.rewards.numeric import final_number, numeric_match
from neuralese.tiny import build_tokenizer

TEST_FILE = SHARED_DATA / "gsm8k" / "test.jsonl"
needs_real = pytest.mark.skipif(not TEST_FILE.is_file(), reason=f"{TEST_FILE} is not here")


@pytest.fixture(scope="module")
def raw() -> list[dict]:
    return [json.loads(line) for line in TEST_FILE.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def test_split():
    return load_split(make_env("gsm8k"), "test", 10_000, seed=0, name="gsm8k")


@needs_real
def test_answer_column_is_the_number_after_the_marker(raw, test_split):
    assert len(test_split) == len(raw) == 1319
    assert test_split[0]["prompt"] == raw[0]["question"] and test_split[0]["answer"] == "18"
    for row, line in zip(test_split, raw, strict=True):
        expected = line["answer"].split("####")[-1].strip().replace(",", "")
        assert row["answer"] == expected and re.fullmatch(r"-?\d+", expected)
        # The stage-0 target is the real solution without calculator annotations.
        assert "<<" not in row["completion"]
        assert row["completion"].endswith(f"#### {expected}")
    assert {"-10", "-3"} <= set(test_split["answer"])  # negative answers survive


@needs_real
def test_reward_reads_the_real_solution_format(raw, test_split):
    # Real solutions, calculator annotations, thousands commas and all, score 1 ...
    real = [line["answer"] for line in raw]
    assert numeric_match(test_split["prompt"], real, answer=test_split["answer"]) == [1.0] * len(raw)
    assert numeric_match(test_split["prompt"], test_split["completion"], answer=test_split["answer"]) == [
        1.0
    ] * len(raw)
    # ... and each one scores 0 against the next problem's answer (unless the two are equal).
    shifted = test_split["answer"][1:] + test_split["answer"][:1]
    scores = numeric_match(test_split["prompt"], real, answer=shifted)
    assert all(s == float(a == b) for s, a, b in zip(scores, test_split["answer"], shifted, strict=True))


@pytest.mark.parametrize(
    "text, number",
    [
        ("#### 18", "18"),
        ("The answer is $18.", "18"),
        ("She makes $18.00 a day.", "18.00"),
        ("#### 1,080", "1080"),
        ("Total: $1,080.50 after tax", "1080.50"),
        ("#### 18 dollars, since 9 * 2 = 18 and 20 - 2 = 18", "18"),
        ("16 - 3 - 4 = 9\n#### 9", "9"),
        ("He owes -3 dollars", "-3"),
        ("The temperature fell by 16-3", "3"),  # a minus between numbers is not a sign
        ("so 50% of them", "50"),
        ("counts 1,2,3", "3"),  # a list, not a thousands-separated number
        ("x2 and B12", None),  # digits inside words are not numbers
        ("no number", None),
        ("#### ", None),
    ],
)
def test_final_number_cases(text, number):
    got = final_number(text)
    assert (str(got) if got is not None else None) == number


def test_numeric_match_compares_values():
    completions = ["#### 18.00", "#### 18.5", "The answer is 1,080", "#### 17", "", "#### -10"]
    answers = ["18", "18", "1080", "18", "18", "-10"]
    assert numeric_match([""] * 6, completions, answer=answers) == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]


@needs_real
def test_train_split_is_shuffled_by_seed_and_chat_prompts_work():
    env = make_env("gsm8k", {"chat": True})
    a, b, c = (env.dataset("train", 5, seed=s) for s in (0, 0, 1))
    assert a["prompt"] == b["prompt"] != c["prompt"]
    assert a[0]["prompt"][0]["role"] == "user" and a[0]["prompt"][0]["content"].endswith("?")


@needs_real
def test_tokenizer_round_trips_real_gsm8k_text(test_split):
    texts = env_texts(test_split)
    tok = build_tokenizer(texts)
    for text, ids in zip(texts, tok(texts, add_special_tokens=False)["input_ids"], strict=True):
        assert tok.unk_token_id not in ids and tok.decode(ids) == text


def test_bad_files_name_the_file_and_row(tmp_path):
    good = {"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}
    cases = {
        "no_marker.jsonl": ([good, {"question": "q", "answer": "just 3"}], r"row 1: answer has no '####"),
        "not_number.jsonl": (
            [{"question": "q", "answer": "#### three"}],
            r"row 0: 'three' after '####' is not a number",
        ),
        "no_question.jsonl": ([{"answer": "#### 3"}], r"row 0 has keys \['answer'\], missing \['question'\]"),
    }
    for name, (rows, fragment) in cases.items():
        path = tmp_path / name
        path.write_text("\n".join(json.dumps(r) for r in rows))
        with pytest.raises(EnvError, match=rf"env 'gsm8k': '{re.escape(str(path))}' {fragment}"):
            make_env("gsm8k", {"test_path": str(path)}).dataset("test", 5, seed=0)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(EnvError, match=r"broken.jsonl' line 2 is not valid JSON"):
        make_env("gsm8k", {"train_path": str(broken)}).dataset("train", 5, seed=0)
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps(good))
    row = make_env("gsm8k", {"test_path": str(ok)}).dataset("test", 5, seed=0)[0]
    assert (row["answer"], row["completion"]) == ("2", "1+1=2\n#### 2")
    with pytest.raises(
        EnvError, match=r"data file '.*missing.jsonl' does not exist; it was taken from env.args.test_path="
    ):
        make_env("gsm8k", {"test_path": str(tmp_path / "missing.jsonl")}).dataset("test", 5, seed=0)
