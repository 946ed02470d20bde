#!/usr/bin/env bash
# The main job on the embedded default, from nothing to an exported neuralese model:
#   1. set up .venv (scripts/setup.sh)
#   2. stage 0: train a 1M-parameter Llama as-is on 4+4-digit addition from an imperfect teacher
#   3. evaluate it (greedy accuracy, pass@1 and pass@8 at temperature 1: pretrain's last line)
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
start=$(date +%s)
rm -rf "$RUN"

echo "== stage 0: as-is model (feedback off), TRL SFTTrainer"
# Its last line is the as-is model's evaluation (the recipe's eval section), the numbers RL starts from.
before=$($N pretrain "$RECIPE" --set output_dir="$RUN" --set model.path="$RUN/as-is" | tail -n 1)
echo "as-is: $before"

echo "== stage 1: neuralese RL"
$N train "$RECIPE" --set output_dir="$RUN" --set model.path="$RUN/as-is" "$@"
# eval reads the task from the run: its env, its eval section (500 test problems, greedy accuracy,
# pass@1 and pass@8 at temperature 1, 8 answer tokens) and its seed.
after=$($N eval "$RUN" --quiet)
echo "after RL: $after"

echo "== export"
$N export "$RUN" "$RUN/export" --overwrite
$N inspect "$RUN/export" --out "$RUN/thoughts.png"   # the first test problem, 9216+2292=

.venv/bin/python - "$before" "$after" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
b, a, secs = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
print(f"\n{'':24}{'as-is':>10}{'after RL':>10}")
for key in ("accuracy", "pass_at_1", "pass_at_k", "mean_generated_positions"):
    print(f"{key:24}{b[key]:>10}{a[key]:>10}")
print(f"\ndemo wall time: {secs} s (install excluded)")
PY
