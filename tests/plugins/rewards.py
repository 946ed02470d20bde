"""Reward plug-ins used by the trainer tests (loaded by path, as a user's would be)."""


def digit_share(prompts, completions, **kwargs):
    """Fraction of the completion's characters that are the digit 1: varies between samples of an
    untrained model, so group-relative advantages are not all zero."""
    return [sum(ch == "1" for ch in c) / max(1, len(c)) for c in completions]


def thought_count(prompts, completions, num_thoughts, generated_positions, completion_ids, **kwargs):
    """Checks that the trainer passes its extra columns: 1.0 when they are consistent."""
    return [
        float(n >= 0 and g >= n and len(ids) <= g)
        for n, g, ids in zip(num_thoughts, generated_positions, completion_ids)
    ]


def never_applies(prompts, completions, **kwargs):
    """None for every sample: a reward for rows this batch does not have."""
    return [None] * len(completions)
