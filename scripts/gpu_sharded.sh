#!/usr/bin/env bash
# Sharded training with every shipped accelerate config (rscaffold/config/accelerate) on 2 GPUs: ddp, fsdp
# (FSDP2, full sharding), zero2 and zero3 (DeepSpeed; skipped when the deepspeed package is missing). Each
# trains the shipped testbed base for a few steps, full fine-tuning and LoRA, and its saved student is
# compared with the one a single process trains on the same global batches (2 processes x batch B against
# 1 process x batch B x 2 accumulated micro-batches), float32, no dropout.
#
#   scripts/gpu_sharded.sh                     # all four configs into runs/sharded
#   CONFIGS="fsdp zero3" VARIANTS=lora scripts/gpu_sharded.sh
#   DRY_RUN=1 scripts/gpu_sharded.sh           # the commands only
#   CPU=1 scripts/gpu_sharded.sh               # ddp on 2 CPU processes (gloo): checks this script anywhere
#
# Prints one line per config and variant: the largest parameter difference from the single process and
# PASS or FAIL at TOL (default 1e-3: float32 sums in another order drift, and Adam scales the drift); exits 1
# when one fails. Needs torch (CUDA), transformers, accelerate, peft, tokenizers, pydantic, pyyaml and this
# repository (on PYTHONPATH, not installed); deepspeed for zero2/zero3. With $OUT set (the device runner's
# output folder) the log and the summary are copied there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=$(command -v "${PYTHON:-python3}")
RUN=$(realpath -m "${RUN:-runs/sharded}")
CONFIGS=${CONFIGS:-ddp fsdp zero2 zero3}
VARIANTS=${VARIANTS:-full lora}
STEPS=${STEPS:-12}
TOL=${TOL:-1e-3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
say() { echo "[gpu-sharded $(date +%H:%M:%S)] $*" >&2; }
mkdir -p "$RUN"
LOG=$RUN/gpu_sharded.log

if [[ -n "${CPU:-}" ]]; then
  export ACCELERATE_USE_CPU=1 CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  CONFIGS=ddp  # accelerate 1.15 shards (FSDP, DeepSpeed) only on accelerators
elif [[ -z "${DRY_RUN:-}" ]]; then
  GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
  if ((GPUS < 2)); then
    say "$GPUS GPU(s): 2 are needed (CPU=1 runs the ddp config on CPU processes instead)"
    exit 2
  fi
fi

# 1. A build folder: 48 labelled traces made in code (the tests' data), 4 records a micro-batch, 12 steps.
BUILD=$RUN/build
if [[ ! -f $BUILD/proposer.jsonl ]]; then
  "$PY" - "$RUN" <<'PY'
import sys
from pathlib import Path
from rscaffold.build import build_folder
from rscaffold.config import BuildConfig, TestbedConfig
from rscaffold.schema import write_jsonl
from tests.test_build import make_traces
run = Path(sys.argv[1])
write_jsonl(run / "labelled.jsonl", make_traces(48))
small = TestbedConfig(train=20, test_id=0, test_ood=0, test_surface=0, perturbed_groups=0)
build_folder(run / "labelled.jsonl", run / "build", BuildConfig(), small)
PY
fi

# 2. Each variant: one process, then each config with two.
COMMON=(model.base=testbed "train.max_steps=$STEPS" train.batch_size=4 train.lr=1e-3 train.bf16=false
  train.log_every=1 train.checkpoint_minutes=null)
declare -A MODEL=([full]="model.lora=false" [lora]="model.lora=true model.lora_r=8 model.lora_dropout=0")
run() {
  say "$*"
  [[ -n "${DRY_RUN:-}" ]] || "$@" >>"$LOG" 2>&1
}
RESULTS=()
for variant in $VARIANTS; do
  read -r -a model <<<"${MODEL[$variant]}"
  one=$RUN/$variant-one
  [[ -f $one/rscaffold_student.json ]] || run env CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-0}" \
    "$PY" -m rscaffold.cli train --input "$BUILD" --output "$one" "${COMMON[@]}" "${model[@]}" train.grad_accum=2
  for config in $CONFIGS; do
    if [[ $config == zero* ]] && ! "$PY" -c 'import deepspeed' 2>/dev/null; then
      say "$config: skipped (no deepspeed package: pip install deepspeed)"
      continue
    fi
    out=$RUN/$variant-$config
    rm -rf "$out"
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if run "$PY" -m accelerate.commands.launch --config_file "rscaffold/config/accelerate/$config.yaml" \
      --num_processes 2 --main_process_port "$port" -m rscaffold.cli train --input "$BUILD" --output "$out" \
      "${COMMON[@]}" "${model[@]}" train.grad_accum=1; then
      RESULTS+=("$out")
    else
      say "$config ($variant): training failed; see $LOG"
      RESULTS+=("$out")  # compared below as FAIL (no student)
    fi
  done
done
if [[ -n "${DRY_RUN:-}" ]]; then
  say "dry run: nothing trained"
  exit 0
fi

# 3. Each sharded student against the single process's.
set +e
"$PY" - "$TOL" "$RUN" "${RESULTS[@]}" <<'PY' | tee "$RUN/summary.txt"
import json, sys
from pathlib import Path
from rscaffold.model import load_student
tol, run, failed = float(sys.argv[1]), Path(sys.argv[2]), 0
for folder in map(Path, sys.argv[3:]):
    variant, config = folder.name.split("-", 1)
    try:
        got, _, meta = load_student(folder)
    except (OSError, KeyError, ValueError) as e:
        print(f"{config:6} {variant:5} FAIL: no student ({type(e).__name__})")
        failed += 1
        continue
    ref = load_student(run / f"{variant}-one")[0].state_dict()
    got = got.state_dict()
    diff = max((ref[k] - got[k]).abs().max().item() for k in ref) if ref.keys() == got.keys() else float("inf")
    ok = diff <= tol and meta["train"]["processes"] == 2
    failed += not ok
    print(f"{config:6} {variant:5} {'PASS' if ok else 'FAIL'}: max |parameter difference| {diff:.2e} "
          f"({meta['train']['processes']} processes, {meta['train']['steps']} steps, weights {meta['weights']})")
sys.exit(1 if failed else 0)
PY
CODE=${PIPESTATUS[0]}
set -e
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/sharded"
  cp "$LOG" "$RUN/summary.txt" "$OUT/sharded/"
fi
exit "$CODE"
