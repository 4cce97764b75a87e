#!/usr/bin/env bash
# Stage 3-4 of the regime measurement on runs/x9 (after the pretrain). Logs to experiments/log_*.txt
set -u
cd /work/main
R=runs/x9
RS=.venv/bin/rscaffold
T() { local name=$1; shift; local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
# 3. fine-tunes from the pretrained base, 2 minutes each
for r in scaffold cot-sft long-sft; do
  T ft_$r $RS train --run-dir $R --recipe $r train.max_minutes=2 model.base=$R/students/pretrain
done
T scratch_scaffold $RS train --input $R/build --output $R/students/scaffold-scratch --recipe scaffold train.max_minutes=2
