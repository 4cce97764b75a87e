"""SVAMP: simple variations of arithmetic word problems (1,000 items, one challenge set)."""

from __future__ import annotations

from typing import Any

from rscaffold.benchmarks.common import Benchmark, field_of, number_text
from rscaffold.schema import Question


def convert(record: dict[str, Any], index: int, split: str) -> Question:
    body = str(field_of(record, "Body", "body", index=index)).strip()
    ask = str(field_of(record, "Question", "question", index=index)).strip()
    # The source ends Body without a full stop before Question in many records.
    text = f"{body}{'' if body.endswith(('.', '?', '!')) else '.'} {ask}"
    return Question(
        id=str(field_of(record, "ID", "id", index=index, required=False) or f"svamp-{index:05d}"),
        text=text,
        gold=number_text(field_of(record, "Answer", "answer", index=index)),
        task="svamp",
        metadata={"type": field_of(record, "Type", "type", index=index, required=False)},
    )


SPEC = Benchmark(
    name="svamp",
    version="1",
    extraction="number",
    files={"test": ("SVAMP.jsonl", "SVAMP.json", "test.jsonl", "test.parquet")},
    default_split="test",
    convert=convert,
    hub={"test": ("ChilleD/SVAMP", None, "test")},
)
load = SPEC.load
