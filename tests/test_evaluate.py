"""`evaluate`: greedy accuracy and pass@k, scored by the env's correctness check."""

from __future__ import annotations

from pathlib import Path

from neuralese.envs import make_env
from neuralese.evaluate import evaluate
from neuralese.policy import NeuralesePolicy

FIRST_DIGIT = str(Path(__file__).parent / "plugins" / "envs.py") + ":make"


def run(tiny_dir, **kw):
    policy = NeuralesePolicy.from_pretrained(str(tiny_dir)).eval()
    env = make_env(FIRST_DIGIT)
    return evaluate(policy, env, "test", n=200, seed=0, batch_size=64, max_new_tokens=4, progress=False, **kw)


def test_greedy_samples_score_as_the_greedy_answer(tiny_dir):
    """At temperature 0 every sample is the greedy answer: pass@1 = pass@k = accuracy."""
    result = run(tiny_dir, samples=3, temperature=0.0)
    assert 0 < result["accuracy"] < 1  # the check is not vacuous: some right, some wrong
    assert result["pass_at_1"] == result["pass_at_k"] == result["accuracy"]
    assert result["k"] == 3 and result["n"] == 200


def test_pass_at_k_counts_any_right_sample(tiny_dir):
    """At temperature 1 samples differ: one right sample of k counts for pass@k, one in k for pass@1."""
    result = run(tiny_dir, samples=8, temperature=1.0)
    assert 0 < result["pass_at_1"] < result["pass_at_k"] <= 1
    assert "pass_at_1" not in run(tiny_dir)  # no samples asked: greedy only


def test_pass_at_lists_the_unbiased_curve_from_1_to_k(tiny_dir):
    result = run(tiny_dir, samples=6, temperature=1.0)
    curve = result["pass_at"]
    assert len(curve) == 6 and curve == sorted(curve)
    assert abs(curve[0] - result["pass_at_1"]) < 1e-3 and abs(curve[-1] - result["pass_at_k"]) < 1e-3
