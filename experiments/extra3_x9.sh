#!/usr/bin/env bash
# After cot-scratch-s500-fp32 (pid 30947): its decode, evaluate, a continued pretrain in fp32 (+3000 steps) with a
# look-up probe and a CoT fine-tune from it, then the remaining baseline/golden decodes and evaluate.
set -u
cd /work/main
while kill -0 30947 2>/dev/null; do sleep 2; done
echo "[$(date -u +%T)] END cot-scratch-s500-fp32 (see its log for loop seconds)" >> experiments/timeline.txt
R=runs/x9; RS=.venv/bin/rscaffold; BS=32; P=$R/students/pretrain
T() { local name=$1; shift; local t0=$(date +%s.%N); echo "[$(date -u +%T)] START $name: $*" >> experiments/timeline.txt
  "$@" > experiments/log_$name.txt 2>&1; local rc=$?
  local t1=$(date +%s.%N); echo "[$(date -u +%T)] END $name rc=$rc wall=$(echo "$t1 - $t0" | bc) s" >> experiments/timeline.txt; }
Q=$R/testbed/test_id.jsonl; D=$R/decoded
tr() { local name=$1; shift; T $name $RS train --input $R/build --output $R/students/$name "$@"; }
dec() { local name=$1 student=$2 out=$3; shift 3
  T dec_$name $RS decode --student $R/students/$student --input $Q --output $D/$out decode.batch_size=$BS "$@"; }
dec cot_scratch_s500 cot-scratch-s500-fp32 cot-scratch-s500-fp32__none__test_id.jsonl
T evaluate1 $RS evaluate --run-dir $R
tr pretrain-plus3000-fp32 --recipe pretrain model.base=$P train.max_steps=3000 train.bf16=false
T probe_plus3000 .venv/bin/python experiments/probe_lookup.py $R/students/pretrain-plus3000-fp32 200
T probe_base .venv/bin/python experiments/probe_lookup.py $P 200
tr cot-p3000-s300-fp32 --recipe cot-sft model.base=$R/students/pretrain-plus3000-fp32 train.max_steps=300 train.bf16=false
dec cot_p3000 cot-p3000-s300-fp32 cot-p3000-s300-fp32__none__test_id.jsonl
dec long long-sft long-sft__none__test_id.jsonl
dec s45_gold scaffold-s45 scaffold-s45__golden__test_id.jsonl --source golden --golden $R/golden/test_id.jsonl
T evaluate2 $RS evaluate --run-dir $R
