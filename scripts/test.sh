#!/usr/bin/env bash
# Set up .venv (scripts/setup.sh) and run the test suite. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m slow` or `scripts/test.sh tests/test_policy.py -x`.
# The default run is CPU-only and skips tests marked gpu, slow and vllm; the vllm tier runs
# when vLLM is installed, the gpu tier when CUDA is available.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
if [ $# -eq 0 ]; then
    # Doctests of the reward functions and environments (the examples in their docstrings).
    .venv/bin/python -m pytest -q --doctest-modules --pyargs neuralese -p no:cacheprovider -o addopts=""
    .venv/bin/python -m pytest -q --doctest-modules examples -p no:cacheprovider -o addopts=""
    # The vllm tier runs where vLLM is installed: .venv-vllm (scripts/setup_vllm.sh, the CPU build)
    # or .venv itself (the `vllm` extra on a GPU machine).
    for VPY in .venv-vllm/bin/python .venv/bin/python; do
        if [ -x "$VPY" ] && "$VPY" -c "import vllm" 2>/dev/null; then
            "$VPY" -m pytest -q -m "vllm and not gpu" -o addopts="" tests
            break
        fi
    done
    if .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        .venv/bin/python -m pytest -q -m gpu -o addopts="" tests
    fi
fi
