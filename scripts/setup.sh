#!/usr/bin/env bash
# Create or reuse .venv and install neuralese into it (editable, with dev tools).
# Idempotent: a second run checks what is there and takes seconds.
#
# torch is installed first and pinned through a constraint file, so the rest of the
# dependencies never pull a different torch (on CPU machines, that would mean gigabytes
# of CUDA packages). Set NEURALESE_TORCH to choose another torch version.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${NEURALESE_TORCH:-2.13.0}"
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! "$VPY" -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch==$TORCH_VERSION"
    "$VPY" -m pip install -q "torch==$TORCH_VERSION"
fi
INSTALLED_TORCH=$("$VPY" -c "import torch; print(torch.__version__.split('+')[0])")
CONSTRAINT=.venv/torch-constraint.txt
echo "torch==$INSTALLED_TORCH" > "$CONSTRAINT"

# Reinstall only when pyproject.toml or the set of package files changed since the last install: the
# install is setuptools' strict editable mode (a tree of links under build/ that type checkers can
# follow, mapping rl/ -> neuralese, envs/ -> neuralese.envs, rewards/ -> neuralese.rewards), which
# sees edits to a file at once but a new file only after a reinstall.
STAMP=.venv/.neuralese-installed
FILES=$( (cat pyproject.toml; find rl envs rewards -name '*.py' | LC_ALL=C sort) | cksum)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$FILES" ] \
        || ! "$VPY" -c "import neuralese, neuralese.envs, neuralese.rewards" 2>/dev/null; then
    echo "[setup] installing neuralese[dev] (torch held at $INSTALLED_TORCH)"
    "$VPY" -m pip install -q -c "$CONSTRAINT" -e ".[dev]" --config-settings editable_mode=strict
    echo "$FILES" > "$STAMP"
fi
echo "[setup] ready: $("$VPY" -c 'import torch, transformers, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")')"
