"""GSM-Hard (PAL): GSM8K test questions with large numbers; the target is the program's result.

Some targets are nonsensical (negative egg counts) because numbers were substituted mechanically;
it is a robustness probe, not clean gold (see SOURCE.md).
"""

from __future__ import annotations

from typing import Any

from rscaffold.benchmarks.common import Benchmark, field_of, number_text
from rscaffold.schema import Question


def convert(record: dict[str, Any], index: int, split: str) -> Question:
    return Question(
        id=f"gsm_hard-{index:05d}",
        text=field_of(record, "input", "question", index=index),
        gold=number_text(field_of(record, "target", "answer", index=index)),
        task="gsm_hard",
        metadata={"gsm8k_index": index},
    )


SPEC = Benchmark(
    name="gsm_hard",
    version="1",
    extraction="number",
    files={"test": ("gsmhardv2.jsonl", "gsm_hard.jsonl", "test.jsonl", "test.parquet")},
    default_split="test",
    convert=convert,
    hub={"test": ("reasoning-machines/gsm-hard", None, "train")},
)
load = SPEC.load
