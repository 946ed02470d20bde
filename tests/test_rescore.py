"""`neuralese ablate --diagnose` and `neuralese eval --superposition` end to end, on a tiny MNNS ablation:
each finished run is scored at switch-on and after RL (shuffled thoughts, superposition against the sign
paths, pass@1..K), once; a policy without thoughts, or an environment that does not say what a step can
reach, gets a clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RECIPE = """seed: 0
output_dir: {out}
model:
  path: {out}/as-is
  tiny: {{arch: gpt2, hidden_size: 16, num_layers: 2, num_heads: 2, intermediate_size: 32, max_positions: 16,
         number_pieces: true}}
env:
  name: mnns
  args: {{count: 4, values: true, cot: true, path: sampled, split: multiset, train_part: rl}}
  train_size: 512
  test_size: 16
pretrain: {{max_steps: 10, batch_size: 32, learning_rate: 3.0e-3, warmup_steps: 2}}
neuralese: {{mode: latent, space: embedding, input: latent_only, projection: identity, num_thoughts: 3,
            tbptt_window: full}}
rl: {{steps: 2, prompts_per_step: 4, samples_per_prompt: 4, micro_batch_per_device: 16, max_new_tokens: 2}}
eval: {{n: 16, batch_size: 16, max_new_tokens: 2}}
log: {{save_every: 2, eval_every: 2, completions_every: 2, trackers: []}}
"""
SPEC = """arms:
  soft: {set: []}
  token: {set: [neuralese.mode=off, rl.max_new_tokens=5, eval.max_new_tokens=5]}
"""


def neuralese(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "neuralese.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    root = tmp_path_factory.mktemp("rescore")
    recipe, spec, out = root / "mnns.yaml", root / "arms.yaml", root / "ablate"
    recipe.write_text(RECIPE.format(out=root / "work"))
    spec.write_text(SPEC)
    done = neuralese("ablate", str(recipe), "--spec", str(spec), "--seeds", "1", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return recipe, spec, out


def test_diagnose_scores_each_run_before_and_after_rl_once(ablation):
    recipe, spec, out = ablation
    done = neuralese(
        "ablate", str(recipe), "--spec", str(spec), "--out", str(out), "--diagnose", "--samples", "3"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 run(s) scored" in done.stdout
    lines = {r["arm"]: r for r in map(json.loads, (out / "diagnostics.jsonl").read_text().splitlines())}
    assert set(lines) == {"soft", "token"}
    for when in ("switch_on", "after"):
        soft, token = lines["soft"][when], lines["token"][when]
        for r in (soft, token):
            assert r["n"] == 16 and 0 <= r["accuracy"] <= 1 and len(r["pass_at"]) == 3
            assert r["pass_at"] == sorted(r["pass_at"])
        assert 0 <= soft["accuracy_shuffled"] <= 1 and "accuracy_shuffled" not in token
        sp = soft["superposition"]
        assert all(len(sp[c]) == 3 for c in ("reachable_mass", "entropy", "support", "tv_paths"))
        assert sp["entropy_uniform"][0] == pytest.approx(0.6931, abs=1e-3)  # step 1: two sums, +d and -d
        assert "superposition" not in token
    again = neuralese("ablate", str(recipe), "--spec", str(spec), "--out", str(out), "--diagnose")
    assert again.returncode == 0 and "0 run(s) scored" in again.stdout


def test_eval_superposition_and_its_errors(ablation):
    _, _, out = ablation
    done = neuralese("eval", str(out / "runs" / "soft-s0"), "--n", "8", "--superposition", "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 8 and len(result["superposition"]["reachable_mass"]) == 3
    assert all(0 <= m <= 1 for m in result["superposition"]["reachable_mass"])

    token = neuralese("eval", str(out / "runs" / "token-s0"), "--n", "8", "--superposition", "--quiet")
    assert token.returncode == 2 and "has no thoughts to measure" in token.stderr
    other = neuralese(
        "eval", str(out / "runs" / "soft-s0"), "--n", "8", "--superposition", "--env-args", "{values: false}"
    )
    assert other.returncode == 2 and "does not say what each step can reach" in other.stderr


def test_diagnose_without_runs_says_so(tmp_path, ablation):
    recipe, spec, _ = ablation
    done = neuralese(
        "ablate", str(recipe), "--spec", str(spec), "--out", str(tmp_path / "none"), "--diagnose"
    )
    assert done.returncode == 2 and "holds no runs" in done.stderr
