"""Environment plug-ins used by the reward-model tests (loaded by path, as a user's would be)."""

from neuralese.envs.arithmetic import make_addition


def first_digit_match(prompts, completions, answer, **kwargs):
    """1.0 when the completion starts with the answer's first digit: an untrained tiny model gets
    about one sample in ten right, so most prompts have right and wrong samples to pair."""
    return [float(bool(c.strip()) and c.strip()[0] == str(a)[0]) for c, a in zip(completions, answer)]


class FirstDigit:
    """3-digit addition problems, judged by their first answer digit only."""

    def __init__(self):
        self.addition = make_addition(digits=3)
        self.reward_funcs = [first_digit_match]

    def dataset(self, split, n, seed):
        return self.addition.dataset(split, n, seed)


def make():
    return FirstDigit()


def positions_add_up(prompts, completions, num_thoughts, generated_positions, completion_ids, **kwargs):
    """1.0 when a sample's thoughts and answer tokens (eos included) are its generated positions: a
    correctness check that reads the columns every reward is promised beside the dataset's."""
    return [float(n + len(ids) == g) for n, g, ids in zip(num_thoughts, generated_positions, completion_ids)]


class Counted(FirstDigit):
    """3-digit addition judged by `positions_add_up`: right on every sample the columns are right for."""

    def __init__(self):
        super().__init__()
        self.reward_funcs = [positions_add_up]


def make_counted():
    return Counted()


class Checked(FirstDigit):
    """3-digit addition rewarded by the first digit, but checked by `positions_add_up`: the environment
    names its correctness check apart from what RL maximises."""

    def __init__(self):
        super().__init__()
        self.check = positions_add_up


def make_checked():
    return Checked()


def make_bad_check():
    env = FirstDigit()
    env.check = "positions_add_up"
    return env
