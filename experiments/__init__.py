"""Experiments behind BENCHMARKS.md: tables, probes and ablation specs, run as modules from the repository root."""
