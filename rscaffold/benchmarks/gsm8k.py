"""GSM8K (openai/grade-school-math): grade-school word problems; the gold answer follows ``####``."""

from __future__ import annotations

from typing import Any

from rscaffold.benchmarks.common import Benchmark, field_of, number_text
from rscaffold.schema import Question


def convert(record: dict[str, Any], index: int, split: str) -> Question:
    answer = str(field_of(record, "answer", index=index))
    return Question(
        id=f"gsm8k-{split}-{index:05d}",
        text=field_of(record, "question", index=index),
        gold=number_text(answer.split("####")[-1]),
        task="gsm8k",
        metadata={"solution": answer},
    )


SPEC = Benchmark(
    name="gsm8k",
    version="1",
    extraction="number",
    files={"test": ("test.jsonl", "test.parquet"), "train": ("train.jsonl", "train.parquet")},
    default_split="test",
    convert=convert,
    hub={"test": ("openai/gsm8k", "main", "test"), "train": ("openai/gsm8k", "main", "train")},
)
load = SPEC.load
