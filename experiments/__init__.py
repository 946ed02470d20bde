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
    reward_model_report  reward against true accuracy over steps, for runs rewarded by a model
    mnns.supervised      CoT2's continuous supervision as a stage 0 (MNNS's supervised reference)
    mnns.diagnose        accuracy, shuffled thoughts, superposition and pass@k of MNNS policies
    mnns.table           MNNS's ablations beside CoT2's published table

The ablation is a command of the package: `neuralese ablate` (docs/ablation.md).
"""
