"""The README's complete plug-in example runs as written: its environment and recipe go through stage 0,
the preflight and RL by the real CLI (shrunk with --set to seconds), and the run it makes is read by
`eval` with no flags."""

from __future__ import annotations

import json
import re
from pathlib import Path

from neuralese.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of one language, in order."""
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def plugin_example() -> tuple[str, str]:
    """(my_env.py, my_recipe.yaml) as the README's Plug-ins section gives them."""
    (env,) = [b for b in blocks("python") if "def make(digits" in b]
    (recipe,) = [b for b in blocks("yaml") if b.startswith("# neuralese pretrain my_recipe.yaml")]
    return env, recipe


def test_the_complete_plugin_example_trains(tmp_path, capsys, monkeypatch):
    env, recipe = plugin_example()
    # Under a name of its own: a plug-in's folder joins the import path, where another test's
    # `import my_env` must not find it.
    (tmp_path / "readme_sums_env.py").write_text(env)
    (tmp_path / "my_recipe.yaml").write_text(recipe.replace("my_env.py:make", "readme_sums_env.py:make"))
    monkeypatch.chdir(tmp_path)  # the recipe names my_env.py and runs/ from the working directory
    small = ["pretrain.max_steps=3", "env.train_size=64", "env.test_size=16", "eval.n=8", "rl.steps=1"]
    small += ["rl.prompts_per_step=4", "rl.samples_per_prompt=2", "log.eval_every=0"]
    sets = [x for s in small for x in ("--set", s)]
    assert main(["pretrain", "my_recipe.yaml", *sets]) == 0
    assert main(["train", "my_recipe.yaml", *sets]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["output_dir"] == "runs/sums" and trained["eval/n"] == 8
    assert main(["eval", "runs/sums", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == trained["eval/accuracy"]
