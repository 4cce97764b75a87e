#!/usr/bin/env bash
# After extra5_x9.sh (pid 32526): does completion-only loss on the look-up answers make look-up learnable?
# runs/x9/build-lookup/pretrain.jsonl = build/pretrain.jsonl with each look-up document split into
# prompt (question + "How many X does N have? N has") and completion (" V."); from scratch, fp32, 3000 steps.
set -u
cd /work/main
while [ -n "32526" ] && kill -0 32526 2>/dev/null; do sleep 2; done
R=runs/x9; RS=.venv/bin/rscaffold
T() { local name=$1; shift; if [ "$(date -u +%H%M)" -ge 0815 ]; then echo "[$(date -u +%T)] SKIP $name (deadline)" >> experiments/timeline.txt; return; fi
  local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
T pretrain-lookupco-s3000-fp32 $RS train --input $R/build-lookup --output $R/students/pretrain-lookupco-s3000-fp32 --recipe pretrain train.max_steps=3000 train.bf16=false
T probe_lookupco .venv/bin/python experiments/probe_lookup.py $R/students/pretrain-lookupco-s3000-fp32 200
