"""The planner's environment: any task whose written chain ends with its answer, seen three ways.

    view `planned`   the task's prompts; a completion is a plan, which the frozen decoder reads after the
                     prompt (`prompt + plan`) to write the answer, and the task's own rewards score that
                     answer. RL on a planner runs here: the plan is the policy's whole action.
    view `plan`      stage 0 of the planner: the completion is the plan, the chain without its answer
                     (`654+0822####` of `654+0822####6372`), scored by exact match.
    view `decode`    stage 0 of the decoder: the prompt is `prompt + plan`, the completion is the answer,
                     scored by the task's own rewards.

A row's plan is its `completion` less the `answer` it ends with; a row whose completion does not end
with its answer, or is nothing but its answer, has no plan and is refused by its index.

`plans: shuffled` is the control that says whether the decoder reads the plan: answer i is written from
plan i+1 of the same call (cyclically), so a decoder that answers from the prompt alone scores as with
`own`. The decoder is greedy and deterministic; its answers for the last batch it was asked about are
kept, so the rewards and the correctness check of one batch decode it once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import torch

from neuralese.envs import correctness_check, make_env
from neuralese.errors import EnvError
from neuralese.load import load_policy
from neuralese.rewards.match import completion_text

VIEWS = ("planned", "plan", "decode")
PLANS = ("own", "shuffled")
DECODER_TOKENS = 16  # most tokens the decoder writes, unless env.args.decoder_tokens says


def split_plan(prompt: Any, completion: str, answer: Any, where: str) -> tuple[str, str]:
    """(plan, answer text) of a row: the completion less the answer it ends with."""
    if not isinstance(prompt, str):
        raise EnvError(f"{where}: the prompt is a conversation; a plan follows a text prompt")
    answer = str(answer).strip()
    completion = str(completion)
    if not completion.endswith(answer):
        raise EnvError(
            f"{where}: the completion {completion!r} does not end with the answer {answer!r}, so it has no "
            "plan to cut off (a planner's task writes a chain and then its answer)"
        )
    plan = completion[: len(completion) - len(answer)]
    if not plan.strip():
        raise EnvError(f"{where}: the completion {completion!r} is only its answer, with no plan before it")
    return plan, answer


def plan_match(prompts: list, completions: list, answer: list, **_: Any) -> list[float | None]:
    """1.0 when the completion is the plan (the `plan` view's answer column) exactly, else 0.0."""
    return [
        float(completion_text(c).strip() == str(a).strip()) for c, a in zip(completions, answer, strict=True)
    ]


class Planned:
    """A task seen as the planner sees it (the module docstring)."""

    def __init__(
        self,
        env: str,
        args: dict | None = None,
        view: str = "planned",
        decoder: str | None = None,
        decoder_tokens: int = DECODER_TOKENS,
        plans: str = "own",
        batch_size: int = 256,
    ):
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        if plans not in PLANS:
            raise ValueError(f"plans must be 'own' or 'shuffled', got {plans!r}")
        for name, value in (("decoder_tokens", decoder_tokens), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if plans != "own" and view != "planned":
            raise ValueError(
                f"plans {plans!r} applies to view 'planned' (the decoder reading the plans), got view {view!r}; "
                "evaluate a planner's stage-0 folder end to end with view=planned"
            )
        if view == "planned" and decoder is None:
            raise ValueError(
                "view 'planned' scores the answer a decoder writes from the plan: set decoder to its folder "
                "(`neuralese planner pretrain` trains one)"
            )
        self.name, self.view, self.plans = env, view, plans
        self.task = make_env(env, args or {}, keys=("env.args.env", "env.args.args"))
        self.decoder_path, self.decoder_tokens, self.batch_size = decoder, decoder_tokens, batch_size
        self._decoder = None
        self._last: tuple[tuple, list[str]] | None = None
        own_check = correctness_check(self.task)
        if view == "plan":
            self.reward_funcs, self.check = [plan_match], plan_match
        elif view == "decode":
            self.reward_funcs, self.check = list(self.task.reward_funcs), own_check
        else:
            self.reward_funcs = [self.through_decoder(f) for f in self.task.reward_funcs]
            self.check = self.through_decoder(own_check)

    # ------------------------------------------------------------------ rows

    def dataset(self, split: str, n: int, seed: int) -> datasets.Dataset:
        rows = self.task.dataset(split, n, seed)
        if self.view == "planned":
            return rows
        if "completion" not in rows.column_names:
            raise EnvError(
                f"env {self.name!r}: its rows have no 'completion' column, so they have no plan (view {self.view!r})"
            )
        prompts, completions, answers = [], [], []
        for i, (p, c, a) in enumerate(zip(rows["prompt"], rows["completion"], rows["answer"], strict=True)):
            plan, answer = split_plan(p, c, a, f"env {self.name!r}, {split} row {i} (view {self.view!r})")
            if self.view == "plan":
                prompts.append(p), completions.append(plan), answers.append(plan)
            else:
                prompts.append(p + plan), completions.append(answer), answers.append(answer)
        rows = rows.remove_columns(["prompt", "completion", "answer"])
        return (
            rows.add_column("prompt", prompts)
            .add_column("completion", completions)
            .add_column("answer", answers)
        )

    # ------------------------------------------------------------------ the decoder

    @property
    def decoder(self):
        """The decoder's policy (loaded on first use, frozen, on the GPU when there is one)."""
        if self._decoder is None:
            if not Path(self.decoder_path).exists():
                raise EnvError(
                    f"env.args.decoder {self.decoder_path!r} does not exist (`neuralese planner pretrain` "
                    "writes the decoder there)"
                )
            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._decoder = load_policy(self.decoder_path, device)
            self._decoder.requires_grad_(False)
        return self._decoder

    def decoded(self, prompts: list, completions: list) -> list[str]:
        """The decoder's greedy answer to each prompt, read after its plan (or the next one's, `shuffled`)."""
        plans = [completion_text(c) for c in completions]
        if self.plans == "shuffled":
            plans = plans[1:] + plans[:1]
        key = (tuple(map(str, prompts)), tuple(plans))
        if self._last is None or self._last[0] != key:
            inputs = [f"{p}{plan}" for p, plan in zip(prompts, plans, strict=True)]
            with torch.no_grad():
                answers = self.decoder.generate(inputs, self.decoder_tokens, 0.0, self.batch_size)
            self._last = (key, answers)
        return self._last[1]

    def through_decoder(self, fn: Callable) -> Callable:
        """`fn` scoring the decoder's answers in place of the plans it is given."""

        def scored(prompts: list, completions: list, **columns: Any) -> list[float | None]:
            return fn(prompts, self.decoded(prompts, completions), **columns)

        scored.__name__ = getattr(fn, "__name__", "reward")
        return scored


planned = Planned  # the factory a recipe names: `env.name: neuralese.planner:planned`
