"""Steps per second of segment + keyword label over the shared real traces, against a bare
``str.split`` pass over the same texts, measured side by side in one run and printed as a ratio.

    python bench/label_throughput.py [--shared ../shared/data] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rscaffold.label import label_trace
from rscaffold.schema import Trace
from rscaffold.segment import segment_trace
from rscaffold.signals import load_lexicon

SETS = ["qwen3_thinking_traces", "thought_anchors_math", "thought_branches_faithfulness"]


def load(shared: Path) -> list[Trace]:
    traces = []
    for name in SETS:
        for line in (shared / "traces" / name / "traces.jsonl").open(encoding="utf-8"):
            r = json.loads(line)
            traces.append(Trace(question_id=r["id"], thinking=r["trace"], answer_text=r["answer_text"] or ""))
    return traces


def best_of(repeat: int, fn) -> tuple[float, int]:
    best, steps = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        steps = fn()
        best = min(best, time.perf_counter() - start)
    return best, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    traces = load(args.shared)
    texts = [t.thinking for t in traces]
    paper, extended = load_lexicon("paper"), load_lexicon("extended")

    def bare() -> int:
        return sum(len([p for p in t.split("\n\n") if p.strip()]) for t in texts)

    def ours(lexicon) -> int:
        return sum(len(label_trace(segment_trace(t), lexicon).steps) for t in traces)

    base_s, base_n = best_of(args.repeat, bare)
    for name, lex in [("paper", paper), ("extended", extended)]:
        ours_s, ours_n = best_of(args.repeat, lambda lex=lex: ours(lex))
        print(
            f"segment+label ({name}): {ours_n / ours_s:,.0f} steps/s; bare str.split: {base_n / base_s:,.0f} steps/s; "
            f"ratio {(ours_n / ours_s) / (base_n / base_s):.3f} ({len(traces)} traces, {ours_n} steps)"
        )


if __name__ == "__main__":
    main()
