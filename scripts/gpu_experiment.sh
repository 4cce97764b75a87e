#!/usr/bin/env bash
# The testbed experiment (`rscaffold demo`) on one GPU (an H100) in about 10 minutes, with the config
# rscaffold/config/gpu.yaml: about 36,000 training traces, the demo's students per seed (scaffold,
# scaffold-pruned, the generative predictor, CoT SFT, long-thinking SFT, oracle CoT) fine-tuned from the
# shipped testbed base for two epochs each, three seeds, the decoding variants of the demo on 500 questions per split, evaluation, headline, report.
# The sizes are estimates, not yet measured on a GPU: every stage prints its time, and a rerun skips
# what is done (outputs that exist are kept), so a run cut off by a time limit goes on where it stopped.
#
#   scripts/gpu_experiment.sh                     # runs/gpu
#   scripts/gpu_experiment.sh 'experiment.seeds=[0]'    # trailing KEY=VALUE override the config
#   DRY_RUN=1 scripts/gpu_experiment.sh           # checks and the config only; trains nothing
#   CONFIG=experiment scripts/gpu_experiment.sh decode.batch_size=512 train.bf16=false   # another config
#   GRID=1 scripts/gpu_experiment.sh              # the signal-mechanism grid, config gpu-grid: runs/gpu-grid
#
# With GRID=1 it runs `rscaffold grid --config gpu-grid` instead: the grid of config/grid.yaml (three
# teacher settings x three signal positions x four signal sources, long-thinking and CoT SFT, 3 seeds)
# with about 7x the training problems and 500 questions per split; not yet run on a GPU either.
#
# Needs Python >= 3.11 with torch (CUDA), transformers, accelerate, peft and tokenizers, and this
# repository (run from anywhere; it is not installed: `python -m rscaffold.cli` with the repository on
# PYTHONPATH). The package also imports pydantic, pyyaml, httpx, numpy and tqdm; the HTML report needs
# matplotlib. A GPU box without network gets them as wheels, downloaded beforehand on a machine with
# network (any OS; the wheels must match the box's Python and platform: pydantic-core and pyyaml are
# compiled, the rest pure Python):
#
#   python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d wheels pydantic pyyaml httpx tqdm matplotlib
#
# then the `wheels` folder travels with the working tree (with the device runner: an untracked folder
# that git does not ignore travels as is; an ignored one goes in `carry`), and on the box:
#
#   WHEELS=wheels scripts/gpu_experiment.sh
#
# installs only the missing ones: `pip install --no-index --find-links $WHEELS --target $DEPS ...`,
# with $DEPS (default $RUN/deps) on PYTHONPATH. Without matplotlib the experiment still runs to the end
# (headline.json, results.json); only the HTML report is left, to build where matplotlib is:
# `rscaffold report runs/gpu`. With $OUT set (the device runner's output folder) the results, the
# scored answers, the report and the log are copied there (not the students or the traces).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=$(command -v "${PYTHON:-python3}")
[[ $PY == /* ]] || PY=$ROOT/$PY
GRID=${GRID:-}
RUN=$(realpath -m "${RUN:-runs/gpu${GRID:+-grid}}")
DEPS=$(realpath -m "${DEPS:-$RUN/deps}")
WHEELS=${WHEELS:-}
CONFIG=${CONFIG:-gpu${GRID:+-grid}}
COMMAND=${GRID:+grid}
COMMAND=${COMMAND:-demo}
say() { echo "[gpu-experiment $(date +%H:%M:%S)] $*" >&2; }
mkdir -p "$RUN"
LOG=$RUN/gpu_experiment.log

# 1. Dependencies: what the box lacks, from wheels when given.
export PYTHONPATH="$ROOT:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
missing() {
  "$PY" - <<'PY'
import importlib.util
need = {"pydantic": "pydantic", "yaml": "pyyaml", "httpx": "httpx", "numpy": "numpy", "tqdm": "tqdm",
        "matplotlib": "matplotlib", "torch": "torch", "transformers": "transformers", "accelerate": "accelerate",
        "peft": "peft", "tokenizers": "tokenizers", "safetensors": "safetensors"}
print(" ".join(pip for module, pip in need.items() if importlib.util.find_spec(module) is None))
PY
}
LACKING=$(missing)
if [[ -n "$LACKING" && -n "$WHEELS" ]]; then
  say "installing from $WHEELS into $DEPS: $LACKING"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" --target "$DEPS" $LACKING || true
  LACKING=$(missing)
fi
REQUIRED=${LACKING/matplotlib/}
if [[ -n "${REQUIRED// /}" ]]; then
  say "missing Python packages: $REQUIRED"
  say "give them as wheels (WHEELS=DIR; see the comment at the top of $0) or install them"
  exit 2
fi
[[ "$LACKING" == *matplotlib* ]] && say "no matplotlib: the HTML report will be left out (rscaffold report $RUN elsewhere)"
"$PY" - <<'PY' >&2
import platform, torch, transformers
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, GPU: {gpu}")
PY

# 2. The command, and the config checked before anything runs (a bad override fails here, in seconds).
if [[ -n "${RSCAFFOLD:-}" ]]; then
  RS=$RSCAFFOLD
else
  RS=$RUN/bin/rscaffold
  mkdir -p "$(dirname "$RS")"
  printf '#!/bin/sh\nexec "%s" -m rscaffold.cli "$@"\n' "$PY" >"$RS"
  chmod +x "$RS"
fi
"$PY" - "$CONFIG" "$@" <<'PY' >&2
import sys
from rscaffold.config import load_config
from rscaffold.schema import InputError
try:
    c = load_config(sys.argv[1], sys.argv[2:])
except InputError as e:
    sys.exit(f"config {sys.argv[1]}: {e}")
print(f"config {sys.argv[1]}: seeds {c.experiment.seeds}, {c.testbed.train} training questions, base {c.model.base}, "
      f"{c.train.max_tokens} tokens per student at batch {c.train.batch_size}, "
      f"{len(c.experiment.students)} students, {len(c.experiment.variants)} decoding variants, decode batch {c.decode.batch_size}")
PY
if [[ -n "${DRY_RUN:-}" ]]; then
  say "dry run: would run $RS $COMMAND --config $CONFIG --run-dir $RUN $*"
  exit 0
fi
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  say "no CUDA device: this config is sized for a GPU (ALLOW_CPU=1 runs it anyway, for hours)"
  [[ -n "${ALLOW_CPU:-}" ]] || exit 2
fi

# 3. The shipped testbed base model; built here (scripts/build_base.sh) if this checkout lacks it.
if [[ ! -f rscaffold/bases/testbed/model.safetensors ]]; then
  say "no rscaffold/bases/testbed: building it (scripts/build_base.sh ${BASE_STEPS:-12000})"
  RSCAFFOLD=$RS RUN=$RUN/base scripts/build_base.sh "${BASE_STEPS:-12000}" 2>&1 | tee -a "$LOG"
fi

# 4. The experiment.
STARTED=$SECONDS
touch "$RUN/.started"
set +e
"$RS" "$COMMAND" --config "$CONFIG" --run-dir "$RUN" "$@" 2>&1 | tee -a "$LOG"
CODE=${PIPESTATUS[0]}
set -e
say "$COMMAND exited $CODE after $((SECONDS - STARTED)) s"
if [[ $CODE -ne 0 && $RUN/headline.json -nt $RUN/.started && "$LACKING" == *matplotlib* ]]; then  # only the report failed
  "$PY" -c "import json, sys; from rscaffold.report.headline import format_headline; print(format_headline(json.load(open(sys.argv[1]))))" \
    "$RUN/headline.json" | tee -a "$LOG"
  CODE=0
fi

# 5. Results back to the caller.
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/gpu"
  for f in headline.json results.json manifest.json config.yaml gpu_experiment.log build/stats.json \
      grid.json grid.md grid.png {realistic,clean,informative}/{headline.json,results.json,manifest.json}; do
    [[ -f $RUN/$f ]] && cp "$RUN/$f" "$OUT/gpu/${f//\//_}"
  done
  for d in scored report; do
    [[ -d $RUN/$d ]] && cp -r "$RUN/$d" "$OUT/gpu/"
  done
  say "copied the results to $OUT/gpu"
fi
exit "$CODE"
