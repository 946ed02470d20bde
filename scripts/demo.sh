#!/usr/bin/env bash
# The main job on the embedded default, from nothing to an exported neuralese model:
#   1. set up .venv (scripts/setup.sh)
#   2. stage 0: train a 1M-parameter Llama as-is on 4+4-digit addition from an imperfect teacher
#   3. evaluate it (greedy accuracy, pass@1 and pass@8 at temperature 1)
#   4. stage 1: neuralese RL (recipes/quickstart.yaml)
#   5. evaluate the RL result the same way, export it, and print before/after
# Everything lands in runs/demo (replaced on each run). Extra arguments are passed to
# `neuralese train` as overrides, e.g. `scripts/demo.sh --set rl.steps=50`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
N=.venv/bin/neuralese
RUN=runs/demo
RECIPE=recipes/quickstart.yaml
EVAL=(--env addition --env-args '{digits: 4}' --n 500 --samples 8 --temperature 1.0 --max-new-tokens 8 --quiet)
start=$(date +%s)
rm -rf "$RUN"

echo "== stage 0: as-is model (feedback off), TRL SFTTrainer"
$N pretrain "$RECIPE" --set output_dir="$RUN" --set model.path="$RUN/as-is"
before=$($N eval "$RUN/as-is" "${EVAL[@]}")
echo "as-is: $before"

echo "== stage 1: neuralese RL"
$N train "$RECIPE" --set output_dir="$RUN" --set model.path="$RUN/as-is" "$@"
after=$($N eval "$RUN" "${EVAL[@]}")
echo "after RL: $after"

echo "== export"
$N export "$RUN" "$RUN/export" --overwrite
$N inspect "$RUN/export" --prompt "$(.venv/bin/python -c 'from neuralese.envs import make_env; print(make_env("addition", {"digits": 4}).dataset("test", 1, 0)[0]["prompt"])')" --out "$RUN/thoughts.png"

.venv/bin/python - "$before" "$after" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
b, a, secs = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
print(f"\n{'':24}{'as-is':>10}{'after RL':>10}")
for key in ("accuracy", "pass_at_1", "pass_at_k", "mean_generated_positions"):
    print(f"{key:24}{b[key]:>10}{a[key]:>10}")
print(f"\ndemo wall time: {secs} s (install excluded)")
PY
