"""What `pip install .` (not editable) ships: every package of the source tree, subpackages included."""

from __future__ import annotations

from pathlib import Path

import tomllib
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_on_disk_is_installed():
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_packages(str(ROOT), include=find["include"]))
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("rl", "envs", "rewards")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert {"rl", "rl.config", "rl.modes", "envs", "rewards"} <= on_disk
    assert on_disk <= shipped, f"not installed by pyproject.toml: {sorted(on_disk - shipped)}"
