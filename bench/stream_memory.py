"""Peak resident memory of `rscaffold segment` and `rscaffold label` on a large trace file.

Builds a trace file of about --size-mb megabytes (the shared real traces repeated), runs each stage
as a child process and prints its peak RSS next to the file size.

    python bench/stream_memory.py --size-mb 1024 [--workdir /tmp/rs-mem] [--learned]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SETS = ["qwen3_thinking_traces", "thought_anchors_math", "thought_branches_faithfulness"]


def build(shared: Path, out: Path, size_mb: int) -> int:
    lines = []
    for name in SETS:
        for line in (shared / "traces" / name / "traces.jsonl").open(encoding="utf-8"):
            r = json.loads(line)
            lines.append(
                json.dumps(
                    {
                        "question_id": r["id"],
                        "question": r["question"],
                        "thinking": r["trace"],
                        "answer_text": r["answer_text"] or "",
                    }
                )
                + "\n"
            )
    written, n = 0, 0
    with out.open("w", encoding="utf-8") as f:
        while written < size_mb * 2**20:
            for line in lines:
                f.write(line)
                written += len(line.encode())
                n += 1
    return n


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    code = (
        f"import resource, subprocess, sys; subprocess.run({cmd!r}, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rscaffold-stream-memory"))
    parser.add_argument("--learned", action="store_true", help="also label with the learned labeller (slower)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / "traces.jsonl"
    n = build(args.shared, source, args.size_mb)
    print(f"input: {source.stat().st_size / 2**20:,.0f} MB, {n:,} traces")
    cli = [sys.executable, "-m", "rscaffold.cli"]
    segmented, labelled = args.workdir / "segmented.jsonl", args.workdir / "labelled.jsonl"
    runs = [
        ("segment", ["segment", "--input", str(source), "--output", str(segmented)]),
        ("label, keywords", ["label", "--policy", "keywords", "--input", str(segmented), "--output", str(labelled)]),
        ("label, keywords + learned labeller", ["label", "--input", str(segmented), "--output", str(labelled)]),
    ]
    for name, argv in runs if args.learned else runs[:2]:
        rss, secs = peak_rss_mb([*cli, *argv])
        print(f"{name}: peak RSS {rss:,.0f} MB, {secs:,.1f} s")


if __name__ == "__main__":
    main()
