#!/usr/bin/env bash
# After extra3_x9.sh (pid 31094): scaffold and long-sft fine-tuned in fp32 for 360 steps (~equal tokens) from the
# continued-pretrain base, decoded at tau 0.5 / none; each stage skipped after 08:12 UTC.
set -u
cd /work/main
while kill -0 31094 2>/dev/null; do sleep 2; done
R=runs/x9; RS=.venv/bin/rscaffold; BS=32; P=$R/students/pretrain-plus3000-fp32
late() { [ "$(date -u +%H%M)" -ge 0812 ]; }
T() { local name=$1; shift; if late; then echo "[$(date -u +%T)] SKIP $name (deadline)" >> experiments/timeline.txt; return; fi
  local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
Q=$R/testbed/test_id.jsonl; D=$R/decoded
tr() { local name=$1; shift; T $name $RS train --input $R/build --output $R/students/$name "$@"; }
dec() { local name=$1 student=$2 out=$3; shift 3
  T dec_$name $RS decode --student $R/students/$student --input $Q --output $D/$out decode.batch_size=$BS "$@"; }
tr scaffold-p3000-s360-fp32 --recipe scaffold model.base=$P train.max_steps=360 train.bf16=false
dec sc360_t05 scaffold-p3000-s360-fp32 scaffold-p3000-s360-fp32-t0.5__predictor-head__test_id.jsonl --source predictor-head --tau 0.5
tr long-p3000-s360-fp32 --recipe long-sft model.base=$P train.max_steps=360 train.bf16=false
dec long360 long-p3000-s360-fp32 long-p3000-s360-fp32__none__test_id.jsonl
dec sc360_gold scaffold-p3000-s360-fp32 scaffold-p3000-s360-fp32__golden__test_id.jsonl --source golden --golden $R/golden/test_id.jsonl
T evaluate3 $RS evaluate --run-dir $R
