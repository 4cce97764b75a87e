"""Benchmarks: each module loads one benchmark's questions; ``BENCHMARKS`` picks a loader by name.

``SPECS`` holds what evaluation needs beside the questions: each benchmark's version, prompt and
answer extraction (a key of ``rscaffold.answers.EXTRACTIONS``).
"""

from __future__ import annotations

from rscaffold.benchmarks import (
    commonsenseqa,
    gsm8k,
    gsm_hard,
    gsm_plus,
    math500,
    strategyqa,
    svamp,
    testbed,
    truthfulqa,
)
from rscaffold.benchmarks.common import Benchmark
from rscaffold.schema import Question
from rscaffold.testbed.problems import SPLITS


def _testbed_question(record: dict, index: int, split: str) -> Question:
    return Question.model_validate(record)


TESTBED = Benchmark(
    name="testbed",
    version="1",
    extraction="number",
    files={split: (f"{split}.jsonl",) for split in SPLITS},
    default_split="test_id",
    convert=_testbed_question,
)

SPECS: dict[str, Benchmark] = {
    m.SPEC.name: m.SPEC for m in (gsm8k, math500, strategyqa, commonsenseqa, truthfulqa, svamp, gsm_hard, gsm_plus)
} | {"testbed": TESTBED}

BENCHMARKS = {"testbed": testbed.load} | {name: spec.load for name, spec in SPECS.items() if name != "testbed"}
