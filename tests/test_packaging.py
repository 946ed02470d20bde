"""What `pip install .` ships: one import namespace, `neuralese`, with every package folder of the source
tree (subpackages included) and no generic top-level name (rl, envs, rewards)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"rl": "neuralese", "envs": "neuralese.envs", "rewards": "neuralese.rewards"}


def package_folders() -> dict[str, Path]:
    """Every package folder on disk, by the import name it installs as."""
    found = {}
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found[".".join((name, *parts))] = init.parent
    return found


def test_every_package_folder_is_listed_and_mapped():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {name: folder for folder, name in FOLDERS.items()}
    on_disk = set(package_folders())
    assert {
        "neuralese",
        "neuralese.config",
        "neuralese.modes",
        "neuralese.envs",
        "neuralese.rewards",
    } <= on_disk
    listed = set(setuptools["packages"])
    assert on_disk == listed, (
        f"on disk, not listed: {sorted(on_disk - listed)}; listed, not on disk: {sorted(listed - on_disk)}"
    )


def test_the_wheel_holds_every_package_under_one_namespace(tmp_path):
    """Build the wheel as `pip install .` does: every module of every package folder is in it, under
    `neuralese/`, and nothing else is a top-level name."""
    src = tmp_path / "src"  # a copy: building writes build/ beside pyproject.toml
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *FOLDERS):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(
            ROOT / name,
            src / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        env=env,
    )
    (wheel,) = tmp_path.glob("neuralese-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"neuralese"}, tops
    for name, folder in package_folders().items():
        for module in folder.glob("*.py"):
            assert f"{name.replace('.', '/')}/{module.name}" in names, f"{module} is not in the wheel"
