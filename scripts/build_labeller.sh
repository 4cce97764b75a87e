#!/usr/bin/env bash
# Build the shipped context labeller (rscaffold/label/labellers/default) from the shipped judge labels
# (rscaffold/label/judge_labels/steps.jsonl, train split only: 568 traces, 10,985 steps) plus distant labels
# of 1,000 scripted-teacher traces (seed 1; keywords of the extended lexicon, removed from the text; no true
# signal). It reads the first 200 characters of the next step too. C (3, 10), the Contrast class-weight
# factor (10, 30) and the policy's label.learned_overrule (0, 0.5, 0.7, 0.9, never) are chosen together by
# 5-fold cross-validation grouped by trace on the train split; the held-out split is scored once at the
# end, at the chosen overrule, and chooses nothing (the config's default overrule is the chosen one). The
# shared traces are read only to check that the judged texts are the steps `rscaffold segment` cuts.
# Deterministic (seeded testbed, one thread; a rebuild is byte-identical): about 30 minutes on one core.
#
# Usage: scripts/build_labeller.sh [SHARED_TRACES] [OUT]
# DISTANT_OUT=FOLDER also rebuilds the earlier default, the distant labeller (labellers/distant), its way.
set -euo pipefail
# One thread: lbfgs sums in a fixed order, so a rebuild is byte-identical.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$(dirname "$0")/.."
shared=${1:-../shared/data/traces}
out=${2:-rscaffold/label/labellers/default}
py=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
inputs=()
for set in qwen3_thinking_traces thought_anchors_math thought_branches_faithfulness; do
  "$py" -m rscaffold.cli import --input "$shared/$set/traces.jsonl" --output "$work/$set.imported.jsonl" >/dev/null
  "$py" -m rscaffold.cli segment --input "$work/$set.imported.jsonl" --output "$work/$set.jsonl" >/dev/null
  inputs+=("$work/$set.jsonl")
done
"$py" -m rscaffold.cli labeller train --judged shipped --input "${inputs[@]}" --testbed 1000 --seed 1 \
  --lexicon extended --next-chars 200 --c 3 10 --contrast-weight 10 30 \
  --unsure-weight 0.5 --overrule 0 0.5 0.7 0.9 none --folds 5 --output "$out"
if [[ -n "${DISTANT_OUT:-}" ]]; then
  "$py" -m rscaffold.cli labeller train --input "${inputs[@]}" --testbed 1000 --seed 1 --lexicon extended \
    --output "$DISTANT_OUT"
fi
