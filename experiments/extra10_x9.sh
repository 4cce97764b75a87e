#!/usr/bin/env bash
# Does look-up appear with more steps? CoT SFT from scratch, fp32, 3000 steps (~4.9M tokens); decode; evaluate.
set -u
cd /work/main
R=runs/x9; RS=.venv/bin/rscaffold
T() { local name=$1; shift; if [ "$(date -u +%H%M)" -ge 0818 ]; then echo "[$(date -u +%T)] SKIP $name (deadline)" >> experiments/timeline.txt; return; fi
  local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
T cot-scratch-s6000-fp32 $RS train --input $R/build --output $R/students/cot-scratch-s6000-fp32 --recipe cot-sft train.max_steps=6000 train.bf16=false
T dec_cot_scratch_s6000 $RS decode --student $R/students/cot-scratch-s6000-fp32 --input $R/testbed/test_id.jsonl --output $R/decoded/cot-scratch-s6000-fp32-ma1024__none__test_id.jsonl decode.batch_size=32 decode.max_answer_tokens=1024
T evaluate7 $RS evaluate --run-dir $R
