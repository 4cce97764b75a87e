#!/usr/bin/env bash
# Build the shipped learned labeller (rscaffold/label/labellers/default) from the shared real traces and the
# testbed: distant supervision from the extended lexicon's keywords (removed from the text), no true
# signals. About a minute on two CPU cores. Usage: scripts/build_labeller.sh [SHARED_TRACES] [OUT]
set -euo pipefail
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
"$py" -m rscaffold.label.learned train --input "${inputs[@]}" --testbed 1000 --seed 1 --lexicon extended --output "$out"
