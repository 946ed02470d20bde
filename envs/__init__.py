"""Reward environments: task data (generated or loaded) and how to score it."""

from neuralese.envs.base import BUILTIN_ENVS, Environment, correctness_check, env_texts, load_split, make_env

__all__ = ["BUILTIN_ENVS", "Environment", "correctness_check", "env_texts", "load_split", "make_env"]
