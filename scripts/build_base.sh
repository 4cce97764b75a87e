#!/usr/bin/env bash
# Build the tiny testbed base model shipped in rscaffold/bases/testbed/ (model.base=testbed).
#
# It stands in for the pretrained model the paper starts from: a ~1M-parameter Llama-style model
# (hidden 128, 4 layers) trained from scratch on a generic corpus with no teacher trace and no
# signal (`build.pretrain_*`: 20,000 fresh testbed question texts, each followed by look-ups of its
# given facts in every format a recipe writes (`N = 19`, `N has 19`, `Here N has 19`,
# `Here M has 5 and N has 19`) and random expressions over them, and 4,000 arithmetic drill
# documents; the test splits' texts are excluded). Its tokenizer is trained on that corpus plus the
# wording of the build's training traces (long.jsonl), so that fine-tunes tokenise traces well; the
# model never trains on a trace.
#
# One cosine cycle of STEPS optimizer steps (default 10,000; about 20 minutes on 2 quiet cores), fp32,
# batch 8, lr 3e-3, seed 0; then the look-up probe per format on 200 test_id questions.
#
#   scripts/build_base.sh            # writes rscaffold/bases/testbed/; update BASE.md from its output
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/base}
RS=${RSCAFFOLD:-.venv/bin/rscaffold}
STEPS=${STEPS:-10000}
OUT=rscaffold/bases/testbed
TESTBED="testbed.train=30000 testbed.test_id=500 testbed.test_ood=100 testbed.test_surface=100 testbed.perturbed_groups=10"

# shellcheck disable=SC2086
"$RS" run --run-dir "$RUN" $TESTBED "run.stages=[testbed, generate, segment, label, stats]"
# shellcheck disable=SC2086
"$RS" build --run-dir "$RUN" $TESTBED build.pretrain_questions=20000 build.pretrain_drills=4000
"$RS" train --input "$RUN/build" --output "$RUN/students/pretrain" --recipe pretrain train.max_steps="$STEPS"
"$RS" probe --student "$RUN/students/pretrain" --questions "$RUN/testbed/test_id.jsonl" --limit 200
mkdir -p "$OUT"
for f in model.safetensors config.json generation_config.json tokenizer.json tokenizer_config.json rscaffold_student.json; do
  cp "$RUN/students/pretrain/$f" "$OUT/$f"
done
echo "wrote $OUT; sha256 $(sha256sum "$OUT/model.safetensors" | cut -d' ' -f1) (update BASE.md)"
