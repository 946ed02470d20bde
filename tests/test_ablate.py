"""`neuralese ablate` end to end on a tiny setting: stage 0, two arms, one seed, a few steps; the
table and plot hold real numbers, every arm saw the same prompts, and a second call only
re-reads what is done. Plus `data_seed`, which the seeds rely on."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neuralese.ablate.arms import Arm, Plan
from neuralese.ablate.report import aggregate, write_table
from neuralese.cli import main
from neuralese.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """# neuralese ablate THIS.yaml --seeds 1 --arms token,latent-w2  (neuralese, a test recipe)
seed: 0
output_dir: {out}
model:
  path: {out}/as-is
  tiny: {{hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64, max_positions: 32}}
env: {{name: addition, args: {{digits: 2}}, train_size: 256, test_size: 16}}
neuralese: {{mode: latent, num_thoughts: 2, tbptt_window: 2}}
pretrain: {{max_steps: 20, batch_size: 32, learning_rate: 3.0e-3, warmup_steps: 2, thought_tokens_max: 2}}
rl: {{steps: 3, prompts_per_step: 4, samples_per_prompt: 4, micro_batch_per_device: 16, learning_rate: 1.0e-3,
     feedback_learning_rate: 1.0e-2, max_new_tokens: 4}}
eval: {{n: 16, max_new_tokens: 4}}
log: {{save_every: 3, eval_every: 2, completions_every: 1, trackers: []}}
"""


def neuralese(*args: str) -> subprocess.CompletedProcess:
    """`neuralese ARGS` in its own process: an ablation sets its process's torch threads."""
    cmd = [sys.executable, "-m", "neuralese.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def ablate(recipe: Path, out: Path) -> str:
    done = neuralese("ablate", str(recipe), "--seeds", "1", "--arms", "token,latent-w2", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_ablate_writes_table_plot_and_results_and_resumes(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "work"))
    out = tmp_path / "ablation"
    log = ablate(recipe, out)
    assert (
        "stage 0 (default): training" in log
        and "[1/2] token seed 0" in log
        and "[2/2] latent-w2 seed 0" in log
    )
    assert re.search(r"\[1/2\] token seed 0: .* s, peak RSS \d+ MiB, about \d+ min left", log), log

    table = (out / "table.md").read_text()
    for arm in ("token", "latent-w2"):
        row = re.search(
            rf"^\| {arm} \| (\d\.\d{{3}}) ± 0\.000 \| ([+-]\d\.\d{{3}}) \| (\d+\.\d) \| (\d+\.\d\d) \|",
            table,
            re.M,
        )
        assert row, f"no numeric row for {arm} in:\n{table}"
        assert 0 < float(row.group(4)), "a step takes time"
    assert re.search(r"^\| latent-w2 \| \d\.\d{4} \| \d\.\d{4} \| \d\.\d\de[+-]\d\d \|", table, re.M), table
    png = (out / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    results = json.loads((out / "results.json").read_text())
    token, latent = (results["arms"][a] for a in ("token", "latent-w2"))
    for a in (token, latent):
        assert 0 <= a["accuracy"] <= 1 and a["peak_rss_mib"] > 100 and a["step_s"] > 0
        assert a["positions"] >= 1 and a["saved_mib"] > 0
    # Latent answers carry 2 thought positions more, and its recompute keeps the live chain.
    assert latent["positions"] > token["positions"] and latent["saved_mib"] > token["saved_mib"]
    assert 0 <= latent["accuracy_gate_closed"] <= 1 and -1 <= latent["cos_consecutive"] <= 1
    # Zero while the gate is shut (no gradient crosses a closed edge): a number, not "no path".
    assert latent["latent_grad_norm"] >= 0 and token["latent_grad_norm"] is None
    runs = {r["arm"]: r for r in results["runs"]}
    assert [s for s, _ in runs["token"]["eval_curve"]] == [2, 3]
    assert all(math.isfinite(acc) for _, acc in runs["latent-w2"]["train_curve"])

    # Equal prompts: both arms drew the same problems at every step.
    def prompts(arm: str) -> list[str]:
        lines = (out / "runs" / f"{arm}-s0" / "completions.jsonl").read_text().splitlines()
        return [(row["step"], row["prompt"]) for row in map(json.loads, lines)]

    assert prompts("token") == prompts("latent-w2")

    # A second call trains nothing and writes the same table.
    again = ablate(recipe, out)
    assert "stage 0 (default): using" in again and again.count("done earlier") == 2
    assert (out / "table.md").read_text() == table

    # Another ablation takes the same stage 0 from where it is (--stage0), trains none, and refuses it
    # under another stage-0 schedule; a variant the spec lacks is refused by name.
    model = tmp_path / "work" / "as-is"
    base = ["ablate", str(recipe), "--arms", "token", "--switch-on", "--out", str(tmp_path / "other")]
    shared = neuralese(*base, "--stage0", f"default={model}", "--set", f"model.path={tmp_path / 'none'}")
    assert shared.returncode == 0, shared.stdout + shared.stderr
    assert f"stage 0 (default): using {model}" in shared.stdout and not (tmp_path / "none").exists()
    other = neuralese(*base, "--stage0", f"default={model}", "--set", "pretrain.max_steps=21")
    assert other.returncode == 2 and "pretrain.max_steps: 20 there, 21 here" in other.stderr, other.stderr
    assert "another --stage0 default=PATH" in other.stderr
    unknown = neuralese(*base, "--stage0", f"answer={model}")
    assert unknown.returncode == 2 and "--stage0 'answer=" in unknown.stderr and "(default)" in unknown.stderr

    # Another subset of arms into the same folder: the earlier arms stay in the table and results.json,
    # and `neuralese compare` pairs the arms that differ only in their window.
    more = neuralese(
        "ablate", str(recipe), "--seeds", "1", "--arms", "latent-full,latent-w0", "--out", str(out)
    )
    assert more.returncode == 0, more.stdout + more.stderr
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["token", "latent-w2", "latent-full", "latent-w0"]
    assert [r["arm"] for r in results["runs"]] == list(results["arms"])
    assert (
        results["arms"]["latent-w2"]["window"] == "2" and results["arms"]["latent-full"]["window"] == "full"
    )
    assert all(
        re.search(rf"^\| {a} \| \d\.\d{{3}}", (out / "table.md").read_text(), re.M) for a in results["arms"]
    )
    shown = neuralese("compare", str(out), str(out), "--labels", "first", "second")
    assert shown.returncode == 0, shown.stderr
    acc = {a: results["arms"][a]["accuracy"] for a in ("latent-full", "latent-w0")}
    pair = rf"^\| (first|second) \| `latent-full` / `latent-w0` \| {acc['latent-full']:.3f} ± 0\.000 \| {acc['latent-w0']:.3f} ± 0\.000 \| "
    assert len(re.findall(pair, shown.stdout, re.M)) == 2, shown.stdout
    assert (
        f"| `token` | {results['arms']['token']['switch_on']:.3f} ± 0.000 | {results['arms']['token']['accuracy']:.3f}"
        in shown.stdout
    )
    # One setting whose arms ran in two folders (two ablations at once): one label reads them as one.
    for name, arms in (("left", ("token", "latent-full")), ("right", ("latent-w0", "latent-w2"))):
        (tmp_path / name).mkdir()
        part = {
            **results,
            "arms": {a: results["arms"][a] for a in arms},
            "runs": [r for r in results["runs"] if r["arm"] in arms],
        }
        (tmp_path / name / "results.json").write_text(json.dumps(part))
    split = neuralese(
        "compare", str(tmp_path / "left"), str(tmp_path / "right"), "--labels", "first", "first"
    )
    assert split.returncode == 0, split.stderr
    assert len(re.findall(pair, split.stdout, re.M)) == 1 and "| arm | first: switch-on |" in split.stdout
    # A folder written before results.json kept each arm's window: the pairs come from its recipe and spec.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for row in results["arms"].values():
        del row["window"], row["sets"]
    (legacy / "results.json").write_text(json.dumps(results))
    again_shown = neuralese("compare", str(legacy), "--labels", "first")
    assert again_shown.returncode == 0, again_shown.stderr
    assert len(re.findall(pair, again_shown.stdout, re.M)) == 1, again_shown.stdout
    # Bad input is named.
    bad = neuralese("compare", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "holds no results.json" in bad.stderr and "nowhere" in bad.stderr
    (legacy / "diagnostics.jsonl").write_text('{"arm": "token"}\n{not json\n')
    bad = neuralese("compare", str(legacy))
    assert bad.returncode == 2 and "diagnostics.jsonl line 2 is not JSON" in bad.stderr, bad.stderr
    bad = neuralese("compare", str(out), str(legacy), "--labels", "one")
    assert bad.returncode == 2 and "2 folder(s) but 1 label(s)" in bad.stderr, bad.stderr

    # A plan whose stage 0 differs (another width) does not start from that model: the default variant
    # lives at the recipe's model.path, shared by every OUT, so the reuse is refused with the key named.
    wider = neuralese(
        "ablate",
        str(recipe),
        "--arms",
        "token",
        "--out",
        str(tmp_path / "other"),
        "--check",
        "--set",
        "model.tiny.hidden_size=16",
    )
    assert wider.returncode == 0, wider.stderr  # --check trains and reads no model
    wider = neuralese(
        "ablate",
        str(recipe),
        "--seeds",
        "1",
        "--arms",
        "token",
        "--out",
        str(tmp_path / "other"),
        "--set",
        "model.tiny.hidden_size=16",
    )
    assert wider.returncode != 0 and not (tmp_path / "other" / "runs").exists()
    assert "model.tiny.hidden_size: 32 there, 16 here" in wider.stderr, wider.stderr
    assert f"remove {tmp_path / 'work' / 'as-is'}" in wider.stderr, wider.stderr


def test_data_seed_fixes_prompts_and_evaluation_while_seed_varies(tiny_dir, tmp_path):
    from neuralese.config import EnvConfig, EvalConfig, LogConfig, ModelConfig, RLConfig, RunConfig
    from neuralese.trainer import Trainer

    def trainer(seed: int, data_seed: int | None) -> Trainer:
        cfg = RunConfig(
            seed=seed,
            data_seed=data_seed,
            output_dir=str(tmp_path / f"run-{seed}-{data_seed}"),
            model=ModelConfig(path=str(tiny_dir)),
            env=EnvConfig(name="addition", args={"digits": 3}, train_size=64),
            rl=RLConfig(prompts_per_step=4, samples_per_prompt=2),
            eval=EvalConfig(n=4),
            log=LogConfig(trackers=[]),
        )
        return Trainer(cfg)

    a, b, c = trainer(0, 7), trainer(1, 7), trainer(1, None)
    assert a.next_prompts() == b.next_prompts() != c.next_prompts()
    assert a.generator.initial_seed() != b.generator.initial_seed()  # sampling still differs


def test_every_arms_spec_resolves_against_its_recipe(capsys):
    specs = sorted((ROOT / "recipes" / "arms").glob("*.yaml"))
    assert specs, "recipes/arms/ holds no ablation spec"
    for spec in specs:
        # A spec named after a recipe (ablate_NAME.yaml or NAME.yaml, or NAME-VARIANT.yaml) goes with it;
        # a general one (modes) onto pointer chasing.
        stems = (spec.stem, spec.stem.split("-")[0])
        named = [ROOT / "recipes" / f"{p}{stem}.yaml" for stem in stems for p in ("ablate_", "")]
        recipe = next((r for r in named if r.is_file()), ROOT / "recipes" / "ablate_chase.yaml")
        rc = main(["ablate", str(recipe), "--spec", str(spec), "--check"])
        printed = capsys.readouterr()
        assert rc == 0, printed.out + printed.err
        arms = dict(
            line.removeprefix("ablate: ").split(": ", 1)
            for line in printed.out.splitlines()
            if line.startswith("ablate: ")
        )
        arms_spec = yaml.safe_load(spec.read_text())["arms"]
        assert len(arms) >= 3 and set(arms_spec) <= set(arms), printed.out
        for (
            name,
            a,
        ) in arms_spec.items():  # each pause control gets its twin, and the twin's thoughts are pauses
            if "pause" in a.get("controls", []):
                assert ", pause, " in arms[f"{name}+pause"], f"{spec.name}: {name}+pause: {printed.out}"


def test_a_bad_spec_is_refused_with_its_key(tmp_path, capsys):
    spec = tmp_path / "arms.yaml"
    spec.write_text("arms:\n  soft: {stage0: nowhere, set: []}\n")
    recipe = ROOT / "recipes" / "ablate_chase.yaml"
    assert main(["ablate", str(recipe), "--spec", str(spec), "--check"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # one paragraph, no traceback
    assert line.startswith("neuralese ablate: error: --spec ") and "arms.soft" in line and "nowhere" in line


def test_switch_on_scores_each_arm_with_its_own_and_shuffled_thoughts(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "work"))
    spec = tmp_path / "arms.yaml"
    spec.write_text(
        "arms:\n  token: {set: [neuralese.mode=off]}\n  soft: {set: [neuralese.space=embedding, "
        "neuralese.input=latent_only]}\n"
    )
    out = tmp_path / "ablation"
    done = neuralese("ablate", str(recipe), "--spec", str(spec), "--out", str(out), "--switch-on")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["arm"]: r for r in json.loads((out / "switch_on_table.json").read_text())}
    assert rows["token"]["shuffled"] is None and rows["token"]["feedback"] == "token"
    assert rows["soft"]["feedback"] == "latent, embedding (softmax), latent_only"
    assert 0 <= rows["soft"]["shuffled"] <= 1 and 0 <= rows["soft"]["accuracy"] <= 1
    # Two thoughts, then at least one answer token (the token arm: answer tokens alone).
    assert rows["soft"]["positions"] >= 3 and rows["token"]["positions"] >= 1
    assert re.search(
        r"^\| soft \| default \| latent, embedding \(softmax\), latent_only \| \d\.\d{3} \| \d\.\d{3} \|",
        (out / "switch_on.md").read_text(),
        re.M,
    )
    assert not (out / "runs").exists(), "switch-on trains no RL run"


def test_the_tables_show_each_modes_own_numbers_as_markdown_cells(tmp_path):
    """Channel mode's |s|, kept and retention, mean over seeds, in the diagnostics table's `mode` column,
    written so that no | splits the cell."""
    run = {"accuracy": 0.5, "switch_on": 0.4, "positions": 6.0, "step_s": 0.2}
    runs = [
        {**run, "arm": "token", "seed": 0},
        {**run, "arm": "channel", "seed": 0, "mode_columns": {"|s|": 1.0, "kept": 0.2, "a mean": 0.5}},
        {**run, "arm": "channel", "seed": 1, "mode_columns": {"|s|": 3.0, "kept": 0.4, "a mean": 0.7}},
    ]
    rows = aggregate(runs, {"token": Arm("token", []), "channel": Arm("channel", [])})
    assert rows["channel"]["mode_columns"] == pytest.approx({"|s|": 2.0, "kept": 0.3, "a mean": 0.6})
    assert rows["token"]["mode_columns"] == {}
    plan = Plan("recipes/ablate_channel.yaml", {"default": []}, {}, seeds=2, threads=1)
    write_table(tmp_path / "table.md", load_config(ROOT / plan.recipe), rows, {}, plan)
    lines = (tmp_path / "table.md").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| arm | gate |"))
    channel = next(line for line in lines[at:] if line.startswith("| channel |"))
    assert channel.endswith("| abs(s) 2.000, kept 0.300, a mean 0.600 |")
    assert channel.count("|") == lines[at].count("|")  # as many cells as the header


def test_an_as_is_model_is_scored_with_room_for_its_own_written_chain():
    # Arms with thoughts give the answer 2 tokens; the optimal-path stage 0 writes 3 partial sums first.
    from neuralese.ablate.arms import make_plan
    from neuralese.ablate.stage0 import format_budget
    from neuralese.envs import env_texts, make_env
    from neuralese.tiny import NUMBER_PATTERN, build_tokenizer

    plan = make_plan(
        str(ROOT / "recipes/mnns.yaml"), str(ROOT / "recipes/arms/mnns.yaml"), "soft-optimal-full"
    )
    assert plan.config(*plan.arms["soft-optimal-full"].sets).eval.max_new_tokens == 2
    rows = make_env("mnns", {"values": True, "cot": True, "path": "optimal"}).dataset("train", 500, seed=0)
    tok = build_tokenizer(env_texts(rows), pattern=NUMBER_PATTERN)
    assert format_budget(plan, "optimal", tok) == 5  # "+3+2-2+0": 3 steps, the answer, eos
    assert format_budget(plan, "answer", tok) == 2


def test_a_stage0_record_older_than_a_setting_reads_as_its_default(tmp_path):
    from neuralese.ablate.stage0 import SETTINGS_FILE, check_reuse, stage0_settings
    from neuralese.config import ModelConfig, RunConfig, TinyModelConfig
    from neuralese.errors import ConfigError

    cfg = RunConfig(model=ModelConfig(tiny=TinyModelConfig(hidden_size=16)))
    record = stage0_settings(cfg)
    del record["pretrain"]["objective"]  # written before `pretrain.objective` existed
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(record))
    check_reuse(tmp_path, "default", cfg)  # trained as the default (`text`) trains
    cfg.pretrain.objective = "mixtures"
    with pytest.raises(ConfigError, match="pretrain.objective: 'text' there, 'mixtures' here"):
        check_reuse(tmp_path, "default", cfg)
    del record["model"]["tiny"]["hidden_size"]  # a key with no default of its own stays a difference
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(record))
    cfg.pretrain.objective = "text"
    with pytest.raises(ConfigError, match="model.tiny.hidden_size: None there, 16 here"):
        check_reuse(tmp_path, "default", cfg)
