"""MATH-500: the 500-problem MATH test subset of "Let's Verify Step by Step"; answers are LaTeX."""

from __future__ import annotations

from typing import Any

from rscaffold.benchmarks.common import Benchmark, field_of
from rscaffold.schema import Question


def convert(record: dict[str, Any], index: int, split: str) -> Question:
    return Question(
        id=str(field_of(record, "unique_id", index=index, required=False) or f"math500-{index:05d}"),
        text=field_of(record, "problem", "question", index=index),
        gold=str(field_of(record, "answer", index=index)).strip(),
        task="math500",
        metadata={
            "subject": field_of(record, "subject", index=index, required=False),
            "level": field_of(record, "level", index=index, required=False),
        },
    )


SPEC = Benchmark(
    name="math500",
    version="1",
    extraction="math",
    files={"test": ("test.jsonl", "test.parquet", "math500.jsonl")},
    default_split="test",
    convert=convert,
    hub={"test": ("HuggingFaceH4/MATH-500", None, "test")},
)
load = SPEC.load
