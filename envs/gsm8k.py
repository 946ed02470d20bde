"""GSM8K: grade-school math word problems, read from the real JSON-lines files.

Each line of `train.jsonl` / `test.jsonl` (Cobbe et al. 2021) holds a `question` and an
`answer`: a worked solution with calculator annotations (`<<16-3-4=9>>`) that ends in
`#### <number>`. The environment's `answer` column is that final number without
thousands commas (`1,080` becomes `1080`); the stage-0 target (`completion`) is the
solution with the annotations removed, still ending in `#### <number>`, the format the
reward (`neuralese.rewards.numeric.numeric_match`) reads first.

Files default to `../shared/data/gsm8k/` beside the repository; `train_path` and
`test_path` point elsewhere (any file in the same format). `chat=True` makes each prompt
a one-message conversation for chat models. `train` is shuffled with the seed; `test`
(also `validation`) keeps file order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from neuralese.envs.files import data_path, read_jsonl, require_keys, require_text, take
from neuralese.errors import EnvError
from neuralese.rewards.match import ANSWER_MARK
from neuralese.rewards.numeric import numeric_match, parse_number

CALCULATOR = re.compile(r"<<[^>]*>>")


def split_solution(solution: str, path: Path, index: int) -> tuple[str, str]:
    """(solution without calculator annotations, final number) of one GSM8K answer text.

    >>> split_solution("2/2=<<2/2=1>>1 bolt\\n#### 1,080", Path("x.jsonl"), 0)
    ('2/2=1 bolt\\n#### 1080', '1080')
    """
    if ANSWER_MARK not in solution:
        raise EnvError(
            f"env 'gsm8k': {str(path)!r} row {index}: answer has no '{ANSWER_MARK} <number>' line: {solution[-80:]!r}"
        )
    body, final = solution.rsplit(ANSWER_MARK, 1)
    number = parse_number(final)
    if number is None:
        raise EnvError(
            f"env 'gsm8k': {str(path)!r} row {index}: {final.strip()!r} after '{ANSWER_MARK}' is not a number"
        )
    text = final.strip().replace(",", "")
    return f"{CALCULATOR.sub('', body)}{ANSWER_MARK} {text}", text


@dataclass
class GSM8K:
    """GSM8K problems from `train_path` / `test_path` (defaults: the copies in ../shared/data/gsm8k)."""

    train_path: str | None = None
    test_path: str | None = None
    chat: bool = False
    cot: bool = True
    reward_funcs: list = field(default_factory=lambda: [numeric_match])
    check: Callable = numeric_match  # correct when it scores 1

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        if split == "train":
            path = data_path(self.train_path, "gsm8k/train.jsonl", "gsm8k", "train_path")
        elif split in ("test", "validation"):
            path = data_path(self.test_path, "gsm8k/test.jsonl", "gsm8k", "test_path")
        else:
            raise ValueError(f"split must be 'train', 'test' or 'validation', got {split!r}")
        rows = read_jsonl(path, "gsm8k")
        for i, row in enumerate(rows):
            require_keys(row, ("question", "answer"), path, i, "gsm8k")
            require_text(row, ("question", "answer"), path, i, "gsm8k")
        indexed = take(list(enumerate(rows)), n, seed, shuffle=split == "train")
        prompts, answers, completions, steps = [], [], [], []
        for i, row in indexed:
            completion, answer = split_solution(row["answer"], path, i)
            question = row["question"]
            prompts.append([{"role": "user", "content": question}] if self.chat else question)
            answers.append(answer)
            lines = completion.split(ANSWER_MARK, 1)[0].splitlines(keepends=True)
            completions.append(completion if self.cot else f"{ANSWER_MARK} {answer}")
            steps.append(lines if self.cot else [])
        return datasets.Dataset.from_dict(
            {"prompt": prompts, "answer": answers, "completion": completions, "written_steps": steps}
        )


def make_gsm8k(
    train_path: str | None = None, test_path: str | None = None, chat: bool = False, cot: bool = True
) -> GSM8K:
    """GSM8K from JSON-lines files of `question` / `answer` (`... #### <number>`). `cot`: the stage-0
    target is the worked solution (one written step per line); false: `#### <number>` alone."""
    return GSM8K(train_path=train_path, test_path=test_path, chat=chat, cot=cot)
