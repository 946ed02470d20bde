"""Reward plug-ins that break the contract, one way each (loaded by path, as a user's would be)."""

import time


def digit_share(prompts, completions, **kwargs):
    """A working reward: the share of the digit 1 in each completion."""
    return [sum(ch == "1" for ch in c) / max(1, len(c)) for c in completions]


def raises(prompts, completions, **kwargs):
    return [len(c) / 0 for c in completions]


def hangs(prompts, completions, **kwargs):
    time.sleep(3600)
    return [0.0] * len(completions)


def wrong_length(prompts, completions, **kwargs):
    return [0.0] * (len(completions) - 1)


def nan(prompts, completions, **kwargs):
    return [float("nan")] * len(completions)


def strings(prompts, completions, **kwargs):
    return ["1.0"] * len(completions)


def scalar(prompts, completions, **kwargs):
    return 1.0


def with_target(prompts, completions, target=1, **kwargs):
    return [float(len(c) == target) for c in completions]


def nothing(prompts, completions, **kwargs):
    """Applies to no sample: fine in a sum, an error as the last stage of a cascade."""
    return [None] * len(completions)


def inf(prompts, completions, **kwargs):
    return [float("inf")] * len(completions)


def huge_int(prompts, completions, **kwargs):
    """An int no float can hold."""
    return [10**400] * len(completions)


def one_parameter(completions):
    """TRL's contract passes the prompts and the columns too: too few parameters."""
    return [0.0] * len(completions)


def huge(prompts, completions, **kwargs):
    """Finite, but a weight of 10 takes the sum past the largest float."""
    return [1e308] * len(completions)
