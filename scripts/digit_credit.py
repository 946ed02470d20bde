"""A partial-credit reward for arithmetic (a plug-in: `rewards: [{fn: "scripts/digit_credit.py:digit_credit"}]`).

The share of the answer's digits written right in place, over the longer of answer and completion:
exact match earns 1, and a policy that gets no answer whole (a weak dense-token model) still gets a
signal that rises as it learns digits. scripts/dense_table.py uses it beside exact match.
"""

from __future__ import annotations

from neuralese.rewards.match import completion_text


def digit_credit(prompts: list, completions: list, answer: list[str], **_) -> list[float]:
    scores = []
    for completion, right in zip(completions, answer):
        text, right = completion_text(completion).strip(), str(right)
        scores.append(sum(a == b for a, b in zip(text, right)) / max(len(text), len(right), 1))
    return scores
