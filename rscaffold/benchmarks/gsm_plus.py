"""GSM-Plus: each GSM8K seed question under eight perturbations; the seed is the consistency group.

Gold "None" marks the "critical thinking" items, which are unanswerable by design.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rscaffold.benchmarks.common import Benchmark, field_of, number_text
from rscaffold.schema import Question


def convert(record: dict[str, Any], index: int, split: str) -> Question:
    seed = str(field_of(record, "seed_question", index=index, required=False) or f"item-{index}")
    return Question(
        id=f"gsm_plus-{split}-{index:05d}",
        text=field_of(record, "question", index=index),
        gold=number_text(field_of(record, "answer", index=index)),
        task="gsm_plus",
        metadata={
            "perturbation": field_of(record, "perturbation_type", index=index, required=False),
            # The seed question's text names the group: the same in every copy of the data.
            "group": "seed-" + hashlib.sha1(seed.encode()).hexdigest()[:12],
            "seed_answer": field_of(record, "seed_answer", index=index, required=False),
        },
    )


SPEC = Benchmark(
    name="gsm_plus",
    version="1",
    extraction="number",
    files={
        "testmini": ("gsmplus_testmini.jsonl", "testmini.jsonl", "testmini.parquet"),
        "test": ("gsmplus_test.jsonl", "test.jsonl", "test.parquet"),
    },
    default_split="testmini",
    convert=convert,
    hub={"testmini": ("qintongli/GSM-Plus", None, "testmini"), "test": ("qintongli/GSM-Plus", None, "test")},
)
load = SPEC.load
