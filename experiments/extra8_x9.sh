#!/usr/bin/env bash
# After extra7_x9.sh (pid 439): tau sweep (0.0, 0.9) and golden for scaffold-lco-s360-fp32; evaluate.
set -u
cd /work/main
while [ -n "439" ] && kill -0 439 2>/dev/null; do sleep 2; done
R=runs/x9; RS=.venv/bin/rscaffold; BS=32; S=scaffold-lco-s360-fp32
T() { local name=$1; shift; if [ "$(date -u +%H%M)" -ge 0812 ]; then echo "[$(date -u +%T)] SKIP $name (deadline)" >> experiments/timeline.txt; return; fi
  local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
Q=$R/testbed/test_id.jsonl; D=$R/decoded
dec() { local name=$1 student=$2 out=$3; shift 3
  T dec_$name $RS decode --student $R/students/$student --input $Q --output $D/$out decode.batch_size=$BS "$@"; }
dec sc_lco_gold $S ${S}__golden__test_id.jsonl --source golden --golden $R/golden/test_id.jsonl
dec sc_lco_t00 $S $S-t0.0__predictor-head__test_id.jsonl --source predictor-head --tau 0.0
dec sc_lco_t09 $S $S-t0.9__predictor-head__test_id.jsonl --source predictor-head --tau 0.9
T evaluate5 $RS evaluate --run-dir $R
