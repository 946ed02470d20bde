"""Environment plug-ins whose datasets break the contract, one way each."""

import datasets

from neuralese.rewards.match import exact_match


class _Env:
    reward_funcs = [exact_match]

    def __init__(self, rows):
        self.rows = rows

    def dataset(self, split, n, seed):
        return self.rows


def make_empty(**args):
    return _Env(datasets.Dataset.from_dict({"prompt": [], "answer": []}))


def make_no_answer(**args):
    return _Env(datasets.Dataset.from_dict({"prompt": ["1+1="], "solution": ["2"]}))


def make_list(**args):
    return _Env([{"prompt": "1+1=", "answer": "2"}])


def make_no_rewards(**args):
    env = _Env(datasets.Dataset.from_dict({"prompt": ["1+1="], "answer": ["2"]}))
    env.reward_funcs = []
    return env


class _Broken(_Env):
    def dataset(self, split, n, seed):
        raise RuntimeError("the task server is down")


def make_dataset_raises(**args):
    return _Broken(None)


NOT_CALLABLE = 3


def make_bad_row(prompt="1+1=", answer="2", at=0, **args):
    """Good rows, then at row `at` the `prompt` and `answer` given (env.args), on every split."""
    prompts = ["1+1=", "2+2=", "3+3="][:at] + [prompt]
    answers = ["2", "4", "6"][:at] + [answer]
    return _Env(datasets.Dataset.from_dict({"prompt": prompts, "answer": answers}))


def make_from_no_rows(**args):
    """A Dataset built from an empty list of rows, as a filter that matched nothing gives: it has no columns."""
    return _Env(datasets.Dataset.from_list([]))


def make_none(**args):
    return None


def make_dataset_dict(**args):
    ds = datasets.Dataset.from_dict({"prompt": ["1+1="], "answer": ["2"]})
    return _Env(datasets.DatasetDict({"train": ds, "test": ds}))


def make_dataset_without_n(**args):
    class Env:
        reward_funcs = [exact_match]

        def dataset(self, split):
            return datasets.Dataset.from_dict({"prompt": ["1+1="], "answer": ["2"]})

    return Env()


def make_exits(**args):
    raise SystemExit("no licence")


def make_buggy(size=3, **args):
    """A factory whose own code fails with a TypeError: not a rejection of env.args."""
    return _Env(datasets.Dataset.from_dict({"prompt": ["1+1="] * size, "answer": [None + 1] * size}))


def text_check(prompts, completions, answer, **kwargs):
    """A check that compares the completion's text with the answer as it is (an int never matches)."""
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def make_int_answers(**args):
    """Addition problems whose `answer` is an int, checked by comparing text with it."""
    env = _Env(datasets.Dataset.from_dict({"prompt": ["1+1=", "2+2=", "3+3="], "answer": [2, 4, 6]}))
    env.reward_funcs = [text_check]
    return env
