"""StrategyQA: yes/no questions that need implicit multi-step reasoning.

The shared copy is the authors' 90/10 split of the official train set (train 2,061 / dev 229); the
paper's 1,602/687 split is HF ``ChilleD/StrategyQA`` (METHOD.md section 6), reachable by name online.
"""

from __future__ import annotations

from typing import Any

from rscaffold.benchmarks.common import Benchmark, field_of
from rscaffold.schema import InputError, Question


def yes_no(value: Any, index: int) -> str:
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return "yes"
    if text in ("false", "no", "0"):
        return "no"
    raise InputError(f"record {index + 1}: field 'answer': expected a boolean or yes/no, got {value!r}")


def convert(record: dict[str, Any], index: int, split: str) -> Question:
    return Question(
        id=str(field_of(record, "qid", "id", index=index, required=False) or f"strategyqa-{index:05d}"),
        text=field_of(record, "question", index=index),
        gold=yes_no(field_of(record, "answer", index=index), index),
        task="strategyqa",
        metadata={"facts": field_of(record, "facts", index=index, required=False)},
    )


SPEC = Benchmark(
    name="strategyqa",
    version="1",
    extraction="yesno",
    files={
        "dev": ("dev.jsonl", "dev.json", "dev.parquet"),
        "train": ("train.jsonl", "train.json", "train.parquet"),
        "test": ("test.jsonl", "test.json", "test.parquet"),
    },
    default_split="dev",
    convert=convert,
    hub={"test": ("ChilleD/StrategyQA", None, "test"), "train": ("ChilleD/StrategyQA", None, "train")},
)
load = SPEC.load
