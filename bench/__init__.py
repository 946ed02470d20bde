"""Benchmarks that compare with a peer in the same run; their numbers, and the commands that made them,
are in BENCHMARKS.md. Run them as modules from the repository root:

    python -m bench.bench_rollout ...   rollout throughput against HF generate, latent-chain memory
    python -m bench.bench_train ...     RL step time against TRL's GRPOTrainer, and mode against mode
    python -m bench.bench_cascade ...   a gating reward cascade against its costly stage alone

harness.py holds what the first two share: the tiny model they time and how they report.
"""
