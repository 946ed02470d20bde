"""Tables and probes behind BENCHMARKS.md and the docs. Run them as modules from the repository root
(`python -m experiments.stage0_table --help`); each module's docstring says what it measures and how
to launch it.

    stage0_table         answer-only against chain-of-thought stage 0, by task and difficulty
    lookup_probe         can a tiny model learn pointer chasing's lookup at all, and with which settings
    grad_stability       the gradient reaching the first feedback edge against chain length and window
    codec_table          codec reconstruction against compression, per level and quantizer
    dense_table          the dense-token policy against the token policy, then RL on it
    translate_table      how well one tiny model's thoughts translate into another's
    cross_table          one model answering from another's translated thoughts, before and after RL

The ablation and its reports are commands of the package: `neuralese ablate` (with `--diagnose`
for superposition and pass@k) and `neuralese compare` (ablations side by side; docs/ablation.md),
as is the report of runs rewarded by a model, `neuralese reward-model report RUN...`. CoT2's
continuous supervision is `neuralese pretrain` with `pretrain.objective: mixtures`.
"""
