"""CommonsenseQA: five-way multiple choice; the gold answer is a letter A-E."""

from __future__ import annotations

from typing import Any

from rscaffold.benchmarks.common import Benchmark, choice_text, field_of
from rscaffold.schema import InputError, Question


def convert(record: dict[str, Any], index: int, split: str) -> Question:
    question = field_of(record, "question", index=index)
    if isinstance(question, dict):  # the original tau-nlp layout nests stem and choices
        record = {**record, "choices": question.get("choices"), "question": question.get("stem")}
        question = record["question"]
    choices = _choices(field_of(record, "choices", index=index), index)
    gold = str(field_of(record, "answerKey", "answer", index=index)).strip()
    if gold not in choices:
        raise InputError(f"record {index + 1}: field 'answerKey': {gold!r} is not one of {', '.join(choices)}")
    return Question(
        id=str(field_of(record, "id", index=index, required=False) or f"csqa-{index:05d}"),
        text=choice_text(question, choices),
        gold=gold,
        task="commonsenseqa",
        metadata={"choices": choices, "concept": record.get("question_concept")},
    )


def _choices(raw: Any, index: int) -> dict[str, str]:
    """{label: [..], text: [..]} (HF) or [{label, text}, ...] (original) -> {label: text}."""
    if isinstance(raw, dict) and "label" in raw:
        return dict(zip(raw["label"], raw["text"], strict=True))
    if isinstance(raw, list):
        return {c["label"]: c["text"] for c in raw}
    raise InputError(f"record {index + 1}: field 'choices': expected labels and texts")


SPEC = Benchmark(
    name="commonsenseqa",
    version="1",
    extraction="choice",
    files={"dev": ("dev.jsonl", "validation.jsonl", "dev.parquet"), "train": ("train.jsonl", "train.parquet")},
    default_split="dev",
    convert=convert,
    hub={"dev": ("tau/commonsense_qa", None, "validation"), "train": ("tau/commonsense_qa", None, "train")},
)
load = SPEC.load
