#!/usr/bin/env bash
# The main job on the embedded default, from nothing to an exported neuralese model:
#   1. set up .venv (scripts/setup.sh)
#   2. stage 0: train a 1M-parameter Llama as-is on 4+4-digit addition from an imperfect teacher
#   3. stage 1: neuralese RL (recipes/quickstart.yaml), evaluated before its first step and at its end
#      (greedy accuracy, pass@1 and pass@8 at temperature 1)
#   4. export the result, draw its thoughts, and print before/after
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
$N pretrain "$RECIPE" --set output_dir="$RUN" --set model.path="$RUN/as-is"

echo "== stage 1: neuralese RL"
# Its last line holds the run's evaluation before the first step (`start`: the gate closed, so the
# as-is model exactly) and at the end, each on the recipe's eval section: 500 test problems, greedy
# accuracy, pass@1 and pass@8 at temperature 1. `neuralese eval runs/demo` prints the same numbers.
result=$($N train "$RECIPE" --set output_dir="$RUN" --set model.path="$RUN/as-is" "$@" | tail -n 1)

echo "== export"
$N export "$RUN" "$RUN/export" --overwrite
$N inspect "$RUN/export" --out "$RUN/thoughts.png"   # the first test problem, 9216+2292=

.venv/bin/python - "$result" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
run, secs = json.loads(sys.argv[1]), int(sys.argv[2])
b, a = run["start"], run
print(f"\n{'':24}{'as-is':>10}{'after RL':>10}")
for key in ("accuracy", "pass_at_1", "pass_at_k", "mean_generated_positions"):
    print(f"{key:24}{b['eval/' + key]:>10}{a['eval/' + key]:>10}")
print(f"\ndemo wall time: {secs} s (install excluded)")
PY
