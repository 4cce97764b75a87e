"""TruthfulQA, multiple choice mc1: one true answer among the options, shown under shuffled letters.

The source lists the true mc1 answer first; the options are shuffled with the question as seed so
the gold letter is spread over A.. and the same for every run (version "1-shuffled").
The generation CSV (Best Answer + Incorrect Answers) is read the same way.
"""

from __future__ import annotations

from typing import Any

from rscaffold.benchmarks.common import Benchmark, choice_text, field_of, shuffled_labels
from rscaffold.schema import InputError, Question


def _options(record: dict[str, Any], index: int) -> tuple[list[str], int]:
    """The mc1 options and the index of the true one, from the mc layout or the generation CSV."""
    mc1 = record.get("mc1_targets")
    if isinstance(mc1, dict):
        labels = list(mc1["labels"])
        if labels.count(1) != 1:
            raise InputError(f"record {index + 1}: field 'mc1_targets.labels': expected exactly one 1")
        return list(mc1["choices"]), labels.index(1)
    best = field_of(record, "Best Answer", "best_answer", index=index)
    wrong = field_of(record, "Incorrect Answers", "incorrect_answers", index=index)
    wrong = [w.strip() for w in wrong.split(";") if w.strip()] if isinstance(wrong, str) else list(wrong)
    return [best, *wrong], 0


def convert(record: dict[str, Any], index: int, split: str) -> Question:
    question = str(field_of(record, "question", "Question", index=index))
    options, correct = _options(record, index)
    choices, gold = shuffled_labels(options, correct, seed=question)
    return Question(
        id=f"truthfulqa-{field_of(record, 'id', index=index, required=False) or index + 1}",
        text=choice_text(question, choices),
        gold=gold,
        task="truthfulqa",
        metadata={
            "choices": choices,
            "category": field_of(record, "category", "Category", index=index, required=False),
        },
    )


SPEC = Benchmark(
    name="truthfulqa",
    version="1-shuffled",
    extraction="choice",
    files={
        "validation": ("TruthfulQA_mc_en_validation.jsonl", "validation.jsonl", "validation.parquet", "TruthfulQA.csv")
    },
    default_split="validation",
    convert=convert,
    hub={"validation": ("truthfulqa/truthful_qa", "multiple_choice", "validation")},
)
load = SPEC.load
