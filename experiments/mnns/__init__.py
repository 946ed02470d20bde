"""MNNS (CoT2's task): stage 0 formats, superposition diagnostics, the supervised reference (BENCHMARKS.md, "Superposition")."""
