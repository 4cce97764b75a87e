#!/usr/bin/env bash
# Stage 4 (as run): decode test_id (500) for each student/variant into runs/x9/decoded/, then evaluate.
set -u
cd /work/main
R=runs/x9; RS=.venv/bin/rscaffold; BS=${BS:-32}
T() { local name=$1; shift; local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
Q=$R/testbed/test_id.jsonl; D=$R/decoded; mkdir -p $D
dec() { local name=$1 student=$2 out=$3; shift 3
  T dec_$name $RS decode --student $R/students/$student --input $Q --output $D/$out decode.batch_size=$BS "$@"; }
dec s45_t05 scaffold-s45 scaffold-s45-t0.5__predictor-head__test_id.jsonl --source predictor-head --tau 0.5
dec long long-sft long-sft__none__test_id.jsonl
dec s45_gold scaffold-s45 scaffold-s45__golden__test_id.jsonl --source golden --golden $R/golden/test_id.jsonl
dec s45_t00 scaffold-s45 scaffold-s45-t0.0__predictor-head__test_id.jsonl --source predictor-head --tau 0.0
dec s45_t09 scaffold-s45 scaffold-s45-t0.9__predictor-head__test_id.jsonl --source predictor-head --tau 0.9
dec sc_t05 scaffold scaffold-budget-t0.5__predictor-head__test_id.jsonl --source predictor-head --tau 0.5
T evaluate $RS evaluate --run-dir $R
