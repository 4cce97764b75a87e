#!/usr/bin/env bash
# After extra6_x9.sh (pid 410): CoT (300 steps) and scaffold (360 steps) fine-tunes, fp32, from the
# completion-only-look-up base; decode test_id; evaluate. Skipped after 08:15 UTC.
set -u
cd /work/main
while [ -n "410" ] && kill -0 410 2>/dev/null; do sleep 2; done
R=runs/x9; RS=.venv/bin/rscaffold; BS=32; P=$R/students/pretrain-lookupco-s3000-fp32
T() { local name=$1; shift; if [ "$(date -u +%H%M)" -ge 0815 ]; then echo "[$(date -u +%T)] SKIP $name (deadline)" >> experiments/timeline.txt; return; fi
  local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
Q=$R/testbed/test_id.jsonl; D=$R/decoded
tr() { local name=$1; shift; T $name $RS train --input $R/build --output $R/students/$name "$@"; }
dec() { local name=$1 student=$2 out=$3; shift 3
  T dec_$name $RS decode --student $R/students/$student --input $Q --output $D/$out decode.batch_size=$BS "$@"; }
tr cot-lco-s300-fp32 --recipe cot-sft model.base=$P train.max_steps=300 train.bf16=false
dec cot_lco cot-lco-s300-fp32 cot-lco-s300-fp32-ma1024__none__test_id.jsonl decode.max_answer_tokens=1024
tr scaffold-lco-s360-fp32 --recipe scaffold model.base=$P train.max_steps=360 train.bf16=false
dec sc_lco_t05 scaffold-lco-s360-fp32 scaffold-lco-s360-fp32-t0.5__predictor-head__test_id.jsonl --source predictor-head --tau 0.5
T evaluate4 $RS evaluate --run-dir $R
