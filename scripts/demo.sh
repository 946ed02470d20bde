#!/usr/bin/env bash
# The main job on the embedded default, from nothing to an exported neuralese model, on CoT2's task
# (MNNS: sign 4 digits so that their sum is as small as it can be, yet not negative; recipes/mnns.yaml):
#   1. set up .venv (scripts/setup.sh)
#   2. stage 0: train a 2-layer GPT-2 of width 32 as-is (feedback off) on one optimal sign path per
#      problem, written as 3 partial sums, then the answer
#   3. stage 1, two GRPO runs from that one model at the same 4 generated positions, one core each:
#      the written chain (token GRPO) and neuralese (3 continuous thoughts where the partial sums were
#      written, Gumbel-softmax weights over the token embeddings, gradient through the whole chain)
#   4. the shuffled control (each answer reads another problem's thoughts), export, draw the thoughts,
#      and print the table
# Everything lands in runs/demo (replaced on each run). Extra arguments are passed to both
# `neuralese train` runs as overrides, e.g. `scripts/demo.sh --set rl.steps=50`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
N=.venv/bin/neuralese
RUN=runs/demo
RECIPE=recipes/mnns.yaml
start=$(date +%s)
rm -rf "$RUN"
mkdir -p "$RUN"

echo "== stage 0: as-is model (feedback off), TRL SFTTrainer, one optimal path per problem"
# Stage 0 reads 75% of CoT2's train multisets; RL reads the other 25%; every score is on CoT2's 1,308
# held-out test sequences, which neither stage sees.
$N pretrain "$RECIPE" --set model.path="$RUN/as-is" \
  --set env.args.train_part=stage0 --set env.args.path=optimal --set eval.max_new_tokens=5 >"$RUN/stage0.json"

echo "== stage 1: the written chain and neuralese, GRPO from the same model (one core each)"
# Each run's last line holds its evaluation before the first step (`start`: the gate closed, so the
# as-is model exactly) and at the end: greedy accuracy on the 1,308 test sequences.
OMP_NUM_THREADS=1 $N train "$RECIPE" --out "$RUN/chain" --set model.path="$RUN/as-is" \
  --set neuralese.mode=off --set rl.max_new_tokens=5 --set eval.max_new_tokens=5 "$@" \
  >"$RUN/chain.json" 2>"$RUN/chain.log" &
chain=$!
OMP_NUM_THREADS=1 $N train "$RECIPE" --out "$RUN/neuralese" --set model.path="$RUN/as-is" \
  --set neuralese.embedding_weights=gumbel "$@" >"$RUN/neuralese.json" 2>"$RUN/neuralese.log" &
neuralese=$!
wait $chain || { tail -n 20 "$RUN/chain.log"; exit 1; }
wait $neuralese || { tail -n 20 "$RUN/neuralese.log"; exit 1; }

echo "== the shuffled control, export, thoughts"
$N eval "$RUN/neuralese" --thoughts shuffled --quiet >"$RUN/shuffled.json"
$N export "$RUN/neuralese" "$RUN/export" --overwrite
$N inspect "$RUN/export" --out "$RUN/thoughts.png"   # the first test problem

.venv/bin/python - "$RUN" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
from pathlib import Path
run, secs = Path(sys.argv[1]), int(sys.argv[2])
last = lambda name: json.loads((run / name).read_text().splitlines()[-1])  # noqa: E731
chain, thoughts, shuffled = last("chain.json"), last("neuralese.json"), last("shuffled.json")
shuffled = {f"eval/{k}": v for k, v in shuffled.items()}  # `neuralese eval` names its keys bare
rows = [
    ("as-is: the written chain", chain["start"]),
    ("token GRPO: the written chain", chain),
    ("neuralese GRPO: 3 thoughts", thoughts),
    ("  its thoughts shuffled", shuffled),
]
print(f"\n{'MNNS, 1,308 test sequences':32}{'accuracy':>10}{'positions':>11}")
for name, r in rows:
    print(f"{name:32}{r['eval/accuracy']:>10.3f}{r['eval/mean_generated_positions']:>11.1f}")
print(f"\ndemo wall time: {secs} s (install excluded)")
PY
