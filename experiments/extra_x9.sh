#!/usr/bin/env bash
# Extra measurements on runs/x9: training throughput levers, longer CoT fine-tunes (pretrained base vs scratch),
# then the remaining baseline decodes and evaluate.
set -u
cd /work/main
R=runs/x9; RS=.venv/bin/rscaffold; BS=32; P=$R/students/pretrain
T() { local name=$1; shift; local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
Q=$R/testbed/test_id.jsonl; D=$R/decoded
tr() { local name=$1; shift; T $name $RS train --input $R/build --output $R/students/$name "$@"; }
dec() { local name=$1 student=$2 out=$3; shift 3
  T dec_$name $RS decode --student $R/students/$student --input $Q --output $D/$out decode.batch_size=$BS "$@"; }
tr tp-bs8-bf16 --recipe cot-sft train.max_steps=40 model.base=$P
tr tp-bs8-fp32 --recipe cot-sft train.max_steps=40 model.base=$P train.bf16=false
tr tp-bs32-bf16 --recipe cot-sft train.max_steps=12 model.base=$P train.batch_size=32
tr cot-s500 --recipe cot-sft train.max_steps=500 model.base=$P
dec cot_s500 cot-s500 cot-s500__none__test_id.jsonl
tr cot-scratch-s500 --recipe cot-sft train.max_steps=500
dec cot_scratch_s500 cot-scratch-s500 cot-scratch-s500__none__test_id.jsonl
T evaluate1 $RS evaluate --run-dir $R
dec long long-sft long-sft__none__test_id.jsonl
dec s45_gold scaffold-s45 scaffold-s45__golden__test_id.jsonl --source golden --golden $R/golden/test_id.jsonl
T evaluate2 $RS evaluate --run-dir $R
