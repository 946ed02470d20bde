"""Checks of a run's data before any model loads: what would otherwise pass silently and show only as
a wrong number after the model has loaded and rolled out.

    tokens    every prompt, answer and completion through the model's tokenizer: a piece it does not
              know becomes `<unk>` (a tiny model's vocabulary is fixed at stage 0), named with its rows
    size      a split with fewer rows than the recipe asked for (a warning: the trainer cycles them)
    answers   the correctness check on the dataset's own answers: when it scores none of them right,
              accuracy would read 0 throughout (an `int` answer compared with text, say)
    rewards   every reward function called once on the dataset's own targets, so an exception names
              the line of the user's file before the model loads, not after the first rollout

Errors name the environment, the split, the row and the column; warnings are returned as text for the
caller to print.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import torch
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from neuralese.config import RunConfig
from neuralese.envs import correctness_check, load_split
from neuralese.errors import EnvError, RewardError
from neuralese.models import load_tokenizer
from neuralese.modes import get_mode
from neuralese.policy import render_prompt
from neuralese.rewards.combine import compute_rewards, reward_name

CHECKED_ROWS = 64
"""Rows the answer check and the reward calls see (every row goes through the tokenizer)."""

SHOWN = 3
"""Rows an error names before `and N more`."""


def unknown_pieces(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[str]]:
    """Per text, the pieces the tokenizer reads as its unknown token (none for a tokenizer without one,
    such as a byte-level BPE, which can read any text)."""
    unk = tokenizer.unk_token_id
    if unk is None or not isinstance(tokenizer, PreTrainedTokenizerFast) or not texts:
        return [[] for _ in texts]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    found = []
    for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
        found.append([text[a:b] for i, (a, b) in zip(ids, offsets) if i == unk])
    return found


READ_BY_POLICY = ("prompt", "answer")  # what RL and evaluation tokenize: the prompt read, the answer written
READ_IN_STAGE0 = (*READ_BY_POLICY, "completion")  # stage 0 also learns the written chain


def check_tokens(
    rows: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    where: str,
    model: str,
    columns: tuple[str, ...] = READ_BY_POLICY,
) -> None:
    """An EnvError naming the rows whose text in `columns` the tokenizer of `model` reads as `<unk>`.

    RL never tokenizes a row's `completion` (rewards get it as text), so a stage 0 that learned another
    written chain than the RL split's (one optimal path, where RL's rows draw theirs) is no error there."""
    bad: list[str] = []
    pieces: set[str] = set()
    for column in columns:
        if column not in rows.column_names:
            continue
        values = list(rows[column])
        texts = [render_prompt(tokenizer, v) if column == "prompt" else str(v) for v in values]
        for i, unknown in enumerate(unknown_pieces(tokenizer, texts)):
            if unknown:
                pieces.update(unknown)
                bad.append(f"row {i}, column {column!r}: {', '.join(map(repr, unknown[:3]))}")
    if not bad:
        return
    more = f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    raise EnvError(
        f"{where}: text the tokenizer of {model!r} does not know ({len(pieces)} distinct pieces, "
        f"read as {tokenizer.unk_token!r}): {'; '.join(bad[:SHOWN])}{more}. A tiny model's vocabulary is fixed "
        "at stage 0 from the train and test splits `neuralese pretrain` saw: re-run stage 0 with this "
        "environment (and its env.args), or keep to the pieces the model knows"
    )


def size_warning(rows: datasets.Dataset, asked: int, where: str, key: str) -> str | None:
    """A warning when a split has fewer rows than asked for (none when it has them all)."""
    if len(rows) >= asked:
        return None
    use = "RL cycles over them" if key == "env.train_size" else "every evaluation scores these"
    return (
        f"{where} returned {len(rows)} rows where {key} asks for {asked}: the run uses these {len(rows)} "
        f"({use}); set {key}: {len(rows)} to say so, or return n rows from dataset(split, n, seed)"
    )


def targets(rows: datasets.Dataset) -> list[str]:
    """What a right completion of each row looks like: its `completion` when it has one, else its answer."""
    column = "completion" if "completion" in rows.column_names else "answer"
    return [str(v) for v in rows[column]]


def own_columns(rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, texts: list[str], thoughts: int):
    """The columns a reward receives in training, for completions `texts` written without a rollout."""
    columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    columns.update(
        completion_ids=ids,
        num_thoughts=[thoughts] * len(texts),
        generated_positions=[thoughts + len(i) for i in ids],
    )
    return columns


def call_rewards(
    funcs: list[Callable],
    weights: list[float],
    rows: datasets.Dataset,
    tokenizer,
    *,
    thoughts: int,
    timeout_s: float,
    where: str,
) -> None:
    """The reward functions (and their weighted sum) once on the first rows, the dataset's own targets as
    completions; a failure is a RewardError that names the function and the line of its file."""
    rows = rows.select(range(min(CHECKED_ROWS, len(rows))))
    texts = targets(rows)
    columns = own_columns(rows, tokenizer, texts, thoughts)
    try:
        compute_rewards(funcs, weights, list(rows["prompt"]), texts, columns, timeout_s)
    except RewardError as e:
        raise RewardError(
            f"{where}, called on the dataset's own targets as completions before the model loads: {e}"
        ) from None


def answer_warning(env, rows: datasets.Dataset, tokenizer, thoughts: int, where: str) -> str | None:
    """None when the correctness check scores the dataset's own answer (or completion) right on some row;
    else an EnvError when the answers are not text (an `int` answer compared with text), or a warning."""
    rows = rows.select(range(min(CHECKED_ROWS, len(rows))))
    check, prompts = correctness_check(env), list(rows["prompt"])
    right = torch.zeros(len(rows), dtype=torch.bool)
    tried = ["answer", *(["completion"] if "completion" in rows.column_names else [])]
    for column in tried:
        texts = [str(v) for v in rows[column]]
        scores, _ = compute_rewards(
            [check], [1.0], prompts, texts, own_columns(rows, tokenizer, texts, thoughts)
        )
        right |= torch.nan_to_num(scores, nan=0.0) >= 1
    if right.any():
        return None
    answer = rows["answer"][0]
    said = (
        f"{where}: the environment's check {reward_name(check)!r} scores none of the first {len(rows)} "
        f"rows' own {' or '.join(tried)} right (row 0: answer {answer!r}), so accuracy would read 0 throughout"
    )
    kinds = sorted({type(v).__name__ for v in rows["answer"]})
    if kinds != ["str"]:
        raise EnvError(
            f"{said}: the `answer` column holds {', '.join(kinds)} values, and a check that compares the "
            "completion's text with the answer never matches a number; return each answer as text "
            "(str(answer)) from dataset(), or compare text with text in the check"
        )
    return f"{said}; a completion counts as correct when the check gives it at least 1 (env.check, or its first reward)"


def preflight(
    env,
    name: str,
    splits: list[tuple[str, datasets.Dataset, int, str]],
    tokenizer: PreTrainedTokenizerBase,
    model: str,
    rewards: tuple[list[Callable], list[float]],
    *,
    thoughts: int = 0,
    timeout_s: float = 60.0,
) -> list[str]:
    """Every check above on `splits` ((split, rows, rows asked for, the key that asks), the first one the
    rewards are called on); an error for what cannot work, the warnings for what may be meant."""
    warnings = []
    for split, rows, asked, key in splits:
        check_tokens(rows, tokenizer, f"env {name!r}, {split} split", model)
        warnings.append(size_warning(rows, asked, f"env {name!r}: dataset({split!r}, n={asked})", key))
    split, rows = splits[0][:2]
    where = f"env {name!r}, {split} split"
    funcs, weights = rewards
    check = correctness_check(env)
    checked = [(funcs, weights), *([] if check in funcs else [([check], [1.0])])]
    for fs, ws in checked:
        call_rewards(fs, ws, rows, tokenizer, thoughts=thoughts, timeout_s=timeout_s, where=where)
    warnings.append(answer_warning(env, rows, tokenizer, thoughts, where))
    return [w for w in warnings if w]


def run_preflight(
    cfg: RunConfig, env, train: datasets.Dataset, data_seed: int, funcs, weights, *, model: str
) -> list[str]:
    """`preflight` of a run before its model loads: the train split, the test problems it evaluates
    on and its rewards (`funcs` with their `weights`), against the tokenizer of `model` (the folder its
    policy loads from)."""
    test = load_split(env, cfg.env.test_split, cfg.eval.n, data_seed, cfg.env.name)
    splits = [
        ("train", train, cfg.env.train_size, "env.train_size"),
        (cfg.env.test_split, test, cfg.eval.n, "eval.n"),
    ]
    tokenizer = load_tokenizer(model, cfg.model.trust_remote_code)
    thoughts = get_mode(cfg.neuralese).thought_positions
    timeout = cfg.rl.reward_timeout_s
    return preflight(
        env, cfg.env.name, splits, tokenizer, model, (funcs, weights), thoughts=thoughts, timeout_s=timeout
    )
