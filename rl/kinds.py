"""Policy kinds: a policy other than the plain one, chosen by a run's config.

A run's config names the kind it needs (`RunConfig.policy_kind`: `cross` for cross-model thinking,
one model reading another's translated thoughts); the feature that provides the kind registers it
here when it is imported (neuralese.translate.cross), and the builder (neuralese.build) and export
(neuralese.export) ask the kind, never the feature by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from neuralese.config import RunConfig
from neuralese.errors import ConfigError


@dataclass(frozen=True)
class PolicyKind:
    """A policy other than the plain one, built for a run whose config names it (`RunConfig.policy_kind`)."""

    name: str
    build: Callable[[RunConfig, torch.device | str], Any]
    """The policy of a run (a NeuralesePolicy), on a device."""
    check: Callable[[RunConfig, str], None] | None = None
    """A ConfigError naming the key (and the source) unless the run's config fits this kind."""
    export_refusal: str | None = None
    """Why `neuralese export` cannot write such a policy as one model folder (None: it can)."""


POLICY_KINDS: dict[str, PolicyKind] = {}


def register_policy_kind(kind: PolicyKind) -> PolicyKind:
    """Make `kind` buildable from any config that names it; a feature calls this when it is imported."""
    POLICY_KINDS[kind.name] = kind
    return kind


def policy_kind(cfg: RunConfig) -> PolicyKind | None:
    """The registered kind `cfg` needs, None for the plain policy, or a ConfigError naming the kind."""
    name = cfg.policy_kind
    if name is None:
        return None
    if name not in POLICY_KINDS:
        raise ConfigError(
            f"the run needs the policy kind {name!r}, which no loaded feature provides "
            "(import neuralese.features, which loads them all)"
        )
    return POLICY_KINDS[name]
