"""Benchmarks: each module loads one benchmark's questions; ``BENCHMARKS`` picks a loader by name.

``SPECS`` holds what evaluation needs beside the questions: each benchmark's version, prompt and
answer extraction (a key of ``rscaffold.answers.EXTRACTIONS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
from rscaffold.schema import InputError, Question
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


def load_questions(name: str, split: str | None = None, path: str | Path | None = None) -> Iterator[Question]:
    """The questions of benchmark ``name`` (its default split unless ``split``) from ``path`` (a file or
    the folder of the source's files), else ``$RSCAFFOLD_BENCHMARKS/<name>`` when that folder exists,
    else the Hugging Face hub (online only)."""
    if name not in BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    if path is None and os.environ.get("RSCAFFOLD_BENCHMARKS"):
        found = Path(os.environ["RSCAFFOLD_BENCHMARKS"]) / name
        path = found if found.exists() else None
    if path is not None and not Path(path).exists():
        raise InputError(f"{path}: not found (benchmark {name})")
    if name == "testbed":
        if path is None:
            raise InputError("testbed: give the folder `rscaffold testbed` wrote (--benchmark-path)")
        return testbed.load(path, split or TESTBED.default_split)
    return SPECS[name].load(path, split)
