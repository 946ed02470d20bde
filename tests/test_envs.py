"""The environment contract for every built-in, evaluation without a trainer, every recipe's env,
and one clear message for every bad plug-in environment."""

from __future__ import annotations

import sys
from pathlib import Path

import datasets
import pytest

from neuralese import features  # noqa: F401  (recipes name registered features: reward models)
from neuralese.config import load_config
from neuralese.envs import BUILTIN_ENVS, correctness_check, env_texts, load_split, make_env
from neuralese.errors import CheckpointError, ConfigError, EnvError
from neuralese.modes import get_mode
from neuralese.rewards.combine import compute_rewards, resolve_reward
from neuralese.tiny import piece_pattern, text_pieces

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
EVAL_SPLIT = {"prosqa": "valid"}


@pytest.mark.parametrize("name", sorted(BUILTIN_ENVS))
def test_builtin_env_evaluates_without_a_trainer(name):
    """What an evaluator does: a split, the first reward on completions; the teacher scores 1, junk 0."""
    env = make_env(name)
    ds = load_split(env, EVAL_SPLIT.get(name, "test"), 12, seed=0, name=name)
    assert (
        len(ds) == 12
        and isinstance(ds[0]["prompt"], str)
        and all(isinstance(a, str) and a for a in ds["answer"])
    )
    columns = {c: ds[c] for c in ds.column_names if c != "prompt"}
    correct = correctness_check(env)
    teacher = correct(ds["prompt"], ds["completion"], **columns)
    junk = correct(ds["prompt"], ["I do not know."] * 12, **columns)
    assert teacher == [1.0] * 12 and junk == [0.0] * 12
    # The same through the checked path the trainer takes, with its extra keyword arguments.
    extra = {"completion_ids": [[1, 2]] * 12, "num_thoughts": [4] * 12, "generated_positions": [6] * 12}
    total, _ = compute_rewards(
        env.reward_funcs, [1.0] * len(env.reward_funcs), ds["prompt"], ds["completion"], {**columns, **extra}
    )
    assert total.tolist() == [1.0] * 12


@pytest.mark.parametrize("name", sorted(BUILTIN_ENVS))
def test_builtin_env_training_split_is_seeded(name):
    env = make_env(name)
    a, b = env.dataset("train", 8, seed=5), env.dataset("train", 8, seed=5)
    assert a.to_dict() == b.to_dict()
    assert a["prompt"] != env.dataset("train", 8, seed=6)["prompt"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_env_rewards_and_sizes_fit(recipe):
    """Each recipe's env builds, its rewards resolve with their args, and its longest sequence fits."""
    cfg = load_config(recipe)
    env = make_env(cfg.env.name, cfg.env.args)
    for i, r in enumerate(cfg.rewards or []):
        try:
            resolve_reward(r.fn, r.args, key=f"rewards[{i}]")
        except CheckpointError as e:  # a reward model this recipe's own stage trains: the message says how
            assert "neuralese reward-model train" in str(e), e
    train = load_split(env, "train", 200, seed=cfg.seed, name=cfg.env.name)
    test = load_split(env, cfg.env.test_split, 200, seed=cfg.seed, name=cfg.env.name)
    if cfg.model.tiny is None:  # a user's own checkpoint (the GPU recipes): no tiny tokenizer to count with
        return
    thoughts = get_mode(cfg.neuralese).thought_positions  # latent mode's, or refine's over thoughts
    # A dense-token model (model.codec) reads one position per chunk of its codec's text tokens.
    per = cfg.codec.chunk_tokens if cfg.model.codec else 1
    pattern = piece_pattern(cfg.model.tiny)  # whole numbers are one piece where the recipe says so
    size = lambda text: -(-len(text_pieces(text, pattern)) // per)  # noqa: E731
    longest = max(
        size(p) + size(c) for ds in (train, test) for p, c in zip(ds["prompt"], ds["completion"], strict=True)
    )
    assert longest + 2 <= cfg.model.tiny.max_positions  # stage 0's text, + bos and eos
    prompt = max(size(p) for ds in (train, test) for p in ds["prompt"])
    budget = max(cfg.rl.max_new_tokens, cfg.eval.max_new_tokens)  # eos included
    assert (
        1 + prompt + thoughts + budget <= cfg.model.tiny.max_positions
    )  # RL's: bos, prompt, thoughts, answer
    answer_tokens = max(size(a) for a in test["answer"])
    assert answer_tokens + 1 <= cfg.eval.max_new_tokens
    assert env_texts(train)


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "myenv.py"
    path.write_text("import datasets\n" + body)
    return str(path)


def test_dataset_missing_answer_is_named(tmp_path):
    ref = write(
        tmp_path,
        """
class Env:
    reward_funcs = [lambda prompts, completions, **kw: [0.0] * len(completions)]
    def dataset(self, split, n, seed):
        return datasets.Dataset.from_dict({"prompt": ["a"] * n, "solution": ["b"] * n})
def make():
    return Env()
""",
    )
    env = make_env(f"{ref}:make")
    with pytest.raises(EnvError) as e:
        load_split(env, "train", 3, seed=0, name=f"{ref}:make")
    assert str(e.value) == (
        f"env '{ref}:make': dataset('train') has columns ['prompt', 'solution'], missing ['answer']; "
        "every environment dataset needs 'prompt' and 'answer'"
    )


@pytest.mark.parametrize(
    "body, fragment",
    [
        (
            "def make():\n    return {'dataset': None}\n",
            "the factory returned dict, which has no dataset(split, n, seed) method",
        ),
        (
            "class E:\n    reward_funcs = []\n    def dataset(self, s, n, seed): ...\ndef make():\n    return E()\n",
            "the factory returned E whose reward_funcs is []; expected a non-empty list of functions",
        ),
        (
            "class E:\n    reward_funcs = ['exact_match']\n    def dataset(self, s, n, seed): ...\ndef make():\n    return E()\n",
            "whose reward_funcs is ['exact_match']",
        ),
        (
            "def make(size):\n    return None\n",
            "the factory rejected env.args {'digits': 3}: make() got an unexpected keyword argument 'digits'",
        ),
    ],
)
def test_factory_returning_the_wrong_thing_is_named(tmp_path, body, fragment):
    ref = write(tmp_path, body)
    with pytest.raises(EnvError) as e:
        make_env(f"{ref}:make", {"digits": 3} if "size" in body else None)
    assert str(e.value).startswith(f"env '{ref}:make': ") and fragment in str(e.value)


def test_dataset_of_the_wrong_type_or_empty_is_named(tmp_path):
    ref = write(
        tmp_path,
        """
class Env:
    reward_funcs = [lambda prompts, completions, **kw: [0.0] * len(completions)]
    def dataset(self, split, n, seed):
        if split == "train":
            return [{"prompt": "a", "answer": "b"}]
        return datasets.Dataset.from_dict({"prompt": [], "answer": []})
def make():
    return Env()
""",
    )
    env = make_env(f"{ref}:make")
    with pytest.raises(
        EnvError, match=r"dataset\('train', \.\.\.\) returned list; expected a datasets.Dataset"
    ):
        load_split(env, "train", 3, seed=0, name="myenv")
    with pytest.raises(EnvError, match=r"env 'myenv': dataset\('test', n=3\) is empty"):
        load_split(env, "test", 3, seed=0, name="myenv")


def test_a_dataset_that_returns_more_rows_than_asked_gives_n(tmp_path):
    ref = write(
        tmp_path,
        """
class Env:
    reward_funcs = [lambda prompts, completions, **kw: [0.0] * len(completions)]
    def dataset(self, split, n, seed):  # a whole file, whatever n says
        return datasets.Dataset.from_dict({"prompt": [f"{i}=" for i in range(30)], "answer": ["1"] * 30})
def make():
    return Env()
""",
    )
    env = make_env(f"{ref}:make")
    assert load_split(env, "test", 10, seed=0)["prompt"] == [f"{i}=" for i in range(10)]
    assert len(load_split(env, "test", 50, seed=0)) == 30  # fewer than asked: what there is


def test_plugin_envs_that_do_not_resolve(tmp_path):
    missing = tmp_path / "nowhere.py"
    with pytest.raises(ConfigError, match=rf"env.name: environment factory file '{missing}' does not exist"):
        make_env(f"{missing}:make")
    with pytest.raises(
        ConfigError, match=r"env.name: cannot import environment factory module 'no_such_pkg.envs'"
    ):
        make_env("no_such_pkg.envs:make")
    ref = write(tmp_path, "def make():\n    return None\n")
    with pytest.raises(ConfigError, match=r"environment factory '.*myenv.py' has no attribute 'build'"):
        make_env(f"{ref}:build")
    with pytest.raises(ConfigError, match=r"unknown environment 'prosq'; did you mean 'prosqa'\?"):
        make_env("prosq")


def test_a_package_module_plugin_works():
    env = make_env("neuralese.envs.countdown:make_countdown", {"count": 2, "max_number": 5, "max_target": 10})
    ds = env.dataset("train", 3, seed=0)
    assert isinstance(ds, datasets.Dataset) and all(len(n) == 2 for n in ds["numbers"])


PLUGIN_PACKAGE = {
    "userpkg/__init__.py": "",
    "userpkg/tasks.py": "from neuralese.envs.arithmetic import make_addition as make\n",
    "helpers.py": "DIGITS = 2\n",
    # Names that were once this project's top-level packages: a user's own modules of these names win.
    "rewards.py": "def near_miss(prompts, completions, **columns):\n    return [0.5] * len(completions)\n",
    "tasks.py": "from helpers import DIGITS\nfrom rewards import near_miss\n"
    "from neuralese.envs.arithmetic import make_addition\n"
    "def make():\n    env = make_addition(digits=DIGITS)\n    env.reward_funcs = [*env.reward_funcs, near_miss]\n"
    "    return env\n",
}


def test_plugins_import_from_the_working_directory_and_beside_themselves(tmp_path, monkeypatch):
    """`pkg.module:make` imports from the working directory however the command was launched (the
    `neuralese` script does not put it on the import path, `python -m` does), and a plug-in file
    imports the modules beside it, as `python file.py` would."""
    for name, text in PLUGIN_PACKAGE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    # As in a fresh process: neither the working directory nor the folders of plug-ins other tests loaded
    # (they join the import path for good) are on it, and none of their modules is loaded.
    tests = str(ROOT / "tests")
    path = [p for p in sys.path if p not in ("", str(Path.cwd())) and not p.startswith(tests)]  # noqa: TID251
    monkeypatch.setattr("sys.path", path)
    for name in ("rewards", "helpers", "tasks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert len(load_split(make_env("userpkg.tasks:make", {"digits": 2}), "train", 2, seed=0)) == 2
    monkeypatch.chdir(ROOT)
    env = make_env(f"{tmp_path / 'tasks.py'}:make")
    assert all(len(p) <= len("99+99=") for p in env.dataset("train", 5, seed=0)["prompt"])
    assert env.reward_funcs[-1](["1+1="], ["2"]) == [0.5]  # the user's rewards.py, beside the plug-in
    sys.modules.pop("rewards")


def test_a_plugin_file_may_define_dataclasses(tmp_path):
    """A plug-in file runs as an imported module does: registered under its name before its code runs
    (dataclasses look their module up by name while the class is built)."""
    (tmp_path / "task.py").write_text(
        "from __future__ import annotations\nfrom dataclasses import dataclass\n"
        "from neuralese.envs.arithmetic import make_addition\n\n\n@dataclass\nclass Settings:\n"
        "    digits: int = 2\n\n\ndef make():\n    return make_addition(digits=Settings().digits)\n"
    )
    env = make_env(f"{tmp_path / 'task.py'}:make")
    assert all(len(p) <= len("99+99=") for p in env.dataset("train", 5, seed=0)["prompt"])


def test_plugin_errors_say_where_they_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError,
        match=rf"file 'my_env.py' does not exist \(a relative path is read from the "
        rf"working directory {tmp_path}\)",
    ):
        make_env("my_env.py:make")
    with pytest.raises(
        ConfigError, match=rf"looked up in the working directory {tmp_path} and the installed"
    ):
        make_env("my_env:make")
    (tmp_path / "my_env.py").write_text("def make():\n    return None\n")
    with pytest.raises(ConfigError, match="has no attribute 'mak'; did you mean 'make'\\? its functions"):
        make_env("my_env.py:mak")
    with pytest.raises(ConfigError, match=r"^--env: environment factory file 'no.py' does not exist"):
        make_env("no.py:make", keys=("--env", "--env-args"))


@pytest.mark.parametrize("name", sorted(BUILTIN_ENVS))
@pytest.mark.parametrize("cot", [False, True])
def test_no_tiny_token_spans_the_prompt_and_its_completion(name, cot):
    # Stage 0 learns prompt + completion as one text: a piece joining the prompt's last characters
    # with the completion's first (two letters make one word) is a token the prompt alone never ends
    # in, so generation from the prompt starts where training never did.
    try:
        env = make_env(name, {"cot": True} if cot else {})
    except EnvError:
        pytest.skip(f"{name} has no chain of thought")
    ds = load_split(env, EVAL_SPLIT.get(name, "test"), 40, seed=0, name=name)
    for prompt, completion in zip(ds["prompt"], ds["completion"], strict=True):
        assert text_pieces(prompt + completion) == text_pieces(prompt) + text_pieces(completion), (
            prompt,
            completion,
        )
