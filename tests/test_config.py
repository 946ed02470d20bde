"""Recipes: every shipped YAML loads; bad keys and types fail with a message naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from neuralese.build import check_run
from neuralese.config import RunConfig, describe_fields, load_config, save_config
from neuralese.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_there_are_recipes():
    assert RECIPES, "recipes/ has no YAML recipes"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(recipe: Path):
    cfg = load_config(recipe)
    assert isinstance(cfg, RunConfig)
    # The header names the launch line, so a reader knows how to run it.
    assert "neuralese" in recipe.read_text().splitlines()[0]


def test_misspelt_key_names_key_and_suggestion(tmp_path):
    path = write(tmp_path, "rl:\n  learnin_rate: 1.0e-5\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "rl.learnin_rate" in msg and "did you mean 'rl.learning_rate'" in msg


def test_misspelt_section_is_caught(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'nueralese'; did you mean 'neuralese'"):
        load_config(write(tmp_path, "nueralese:\n  mode: latent\n"))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("rl:\n  steps: ten\n", "key 'rl.steps' expects int, got 'ten'"),
        ("rl:\n  learning_rate: [1]\n", "key 'rl.learning_rate' expects float"),
        ("neuralese:\n  mode: lateral\n", "key 'neuralese.mode' expects one of 'off', 'latent', 'hybrid'"),
        ("neuralese:\n  tbptt_window: half\n", "key 'neuralese.tbptt_window' expects int or 'full'"),
        ("rl:\n  learning_rate: -1.0\n", "key 'rl.learning_rate' must be > 0"),
        ("rl:\n  samples_per_prompt: 1\n", "key 'rl.samples_per_prompt' must be >= 2 for grpo"),
        (
            "neuralese:\n  num_thoughts: 2\n  tbptt_window: 5\n",
            "key 'neuralese.tbptt_window' must be <= neuralese.num_thoughts",
        ),
        ("log:\n  save_every: true\n", "key 'log.save_every' expects int, got True"),
        ("rl: 3\n", "key 'rl' expects RLConfig (a mapping of its fields), got 3"),
        ("- a\n- b\n", "a recipe must be a mapping"),
        ("rl: [\n", "not valid YAML"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, fragment):
    """Every rule of a recipe: its sections' (load_config) and its thought mode's (check_run)."""
    with pytest.raises(ConfigError) as e:
        path = write(tmp_path, text)
        check_run(load_config(path), str(path))
    assert fragment in str(e.value) and str(tmp_path) in str(e.value)


def test_scientific_notation_without_dot_is_a_float(tmp_path):
    # PyYAML reads 1e-5 as a string; a float field accepts it.
    assert load_config(write(tmp_path, "rl:\n  learning_rate: 1e-5\n")).rl.learning_rate == 1e-5


def test_set_overrides_and_round_trip(tmp_path):
    path = write(tmp_path, "rl:\n  steps: 3\n")
    cfg = load_config(
        path, ["rl.steps=7", "neuralese.tbptt_window=full", "env.args={digits: 2}", "model.lora.r=4"]
    )
    assert (cfg.rl.steps, cfg.neuralese.tbptt_window, cfg.env.args, cfg.model.lora.r) == (
        7,
        "full",
        {"digits": 2},
        4,
    )
    out = tmp_path / "resolved.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg
    with pytest.raises(ConfigError, match="unknown key 'rl.stpes'; did you mean 'rl.steps'"):
        load_config(path, ["rl.stpes=1"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(path, ["rl.steps"])


def test_every_field_has_a_docstring():
    missing = [key for key, _, _, doc in describe_fields() if not doc]
    assert not missing, f"config fields without a docstring: {missing}"


def test_defaults_follow_trl():
    from trl import GRPOConfig

    ours, theirs = RunConfig().rl, GRPOConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False)
    assert ours.beta == theirs.beta
    assert ours.learning_rate == theirs.learning_rate
    assert ours.num_iterations == theirs.num_iterations
    assert ours.epsilon_low == theirs.epsilon
    assert ours.scale_rewards == theirs.scale_rewards
    assert theirs.loss_type == "dapo" and ours.loss_aggregation == "token"  # DAPO = token-level mean
    yaml.safe_dump({"ok": True})


def test_yaml_off_is_the_mode_off(tmp_path):
    # YAML 1.1 reads an unquoted `off` as false; a choice field takes it as the word.
    assert load_config(write(tmp_path, "neuralese:\n  mode: off\n")).neuralese.mode == "off"
    assert load_config(write(tmp_path, "rl: {}\n"), ["neuralese.mode=off"]).neuralese.mode == "off"
    with pytest.raises(ConfigError, match="key 'rl.algorithm' expects one of"):
        load_config(write(tmp_path, "rl:\n  algorithm: off\n"))


def test_neuralese_config_shows_each_range():
    shown = {key: tp for key, tp, _, _ in describe_fields()}
    assert shown["rl.learning_rate"] == "float > 0"
    assert shown["rl.feedback_learning_rate"] == "float > 0 or null"
    assert shown["neuralese.tbptt_window"] == "int >= 0 or 'full'"
    assert shown["vllm.gpu_memory_utilization"] == "float in (0, 1]"
    assert shown["rewards"] == "a list of RewardConfig or null"  # a section lists its own fields
    assert (
        shown["rewards[].fn"] == "str" and shown["rewards[].weight"] == "float"
    )  # and so does a list of them
    assert shown["reward_model.gears[].prompts"] == "int >= 1"
