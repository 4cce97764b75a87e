"""What every benchmark loader shares: the spec (version, prompt, extraction, files, hub name) and the
readers for the formats the sources ship (JSONL, JSON, CSV, Parquet) and for the Hugging Face hub."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rscaffold.schema import InputError, Question, read_json_objects

ANSWER_FORMAT = "###Answer: \\boxed{{{answer}}}"
"""How our prompts ask for the final answer (METHOD.md section 3); also how tests write gold answers back."""

PROMPT = (
    "{question}\n\nPlease reason step by step, and give your final answer on the last line as "
    "###Answer: \\boxed{{...}}."
)
"""The zero-shot prompt of every benchmark here (named ``boxed-v1``); choice questions list their options."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: how its records become :class:`Question` records and how its answers are read."""

    name: str
    version: str
    """Bumped whenever the conversion of records to questions changes, so old scores are not mixed in."""
    extraction: str
    """A key of ``rscaffold.answers.EXTRACTIONS``."""
    files: dict[str, tuple[str, ...]]
    """split -> file names to look for inside a folder, first found wins."""
    default_split: str
    convert: Callable[[dict[str, Any], int, str], Question]
    """(record, index, split) -> question."""
    hub: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    """split -> (hub dataset, config, hub split) for loading by name when online."""
    prompt: str = "boxed-v1"

    def load(self, path: str | Path | None = None, split: str | None = None) -> Iterator[Question]:
        """Questions of ``split`` from a file, a folder holding the source's files, or (no path) the hub."""
        split = split or self.default_split
        records = read_hub(self, split) if path is None else read_records(self.find(Path(path), split))
        for i, record in enumerate(records):
            question = self.convert(record, i, split)
            question.metadata.update(benchmark_version=self.version, prompt=self.prompt)
            question.metadata.setdefault("split", split)
            yield question

    def find(self, path: Path, split: str) -> Path:
        if not path.is_dir():
            return path
        if split not in self.files:
            raise InputError(f"{self.name}: unknown split {split!r}; known: {', '.join(self.files)}")
        for name in self.files[split]:
            if (path / name).is_file():
                return path / name
        raise InputError(f"{path}: no {self.name} {split} file (looked for {', '.join(self.files[split])})")


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL, JSON (a list, or {"data": [...]}), CSV or Parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from (obj for _, obj in read_json_objects(path))
    elif suffix == ".json":
        yield from _json_records(path)
    elif suffix == ".csv":
        with _open(path) as f:
            yield from csv.DictReader(f)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    else:
        raise InputError(f"{path}: unknown benchmark file type {suffix!r}; expected .jsonl, .json, .csv or .parquet")


def _open(path: Path):
    try:
        return open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def _json_records(path: Path) -> list[dict[str, Any]]:
    with _open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    data = data.get("data", data.get("examples", data)) if isinstance(data, dict) else data
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records")
    return data


def read_hub(bench: Benchmark, split: str) -> Iterator[dict[str, Any]]:
    """The split from the Hugging Face hub through ``datasets``; a clear error offline or without it."""
    if split not in bench.hub:
        raise InputError(f"{bench.name}: no hub source for split {split!r}; pass a file or folder")
    name, config, hub_split = bench.hub[split]
    try:
        import datasets
    except ImportError:
        raise InputError(
            f"{bench.name}: loading {name} from the hub needs the `datasets` package; "
            "install it, or pass a local file or folder"
        ) from None
    try:
        yield from datasets.load_dataset(name, config, split=hub_split)
    except Exception as e:  # offline, unknown name, gated: all end the same way for the user
        raise InputError(f"{bench.name}: cannot load {name} from the hub ({type(e).__name__}: {e})") from None


def field_of(record: dict[str, Any], *names: str, index: int = 0, required: bool = True) -> Any:
    """The first of ``names`` present in the record; hub and repository copies name fields differently."""
    for name in names:
        if record.get(name) is not None:
            return record[name]
    if required:
        raise InputError(f"record {index + 1}: field '{names[0]}' missing (also tried {', '.join(names[1:])})")
    return None


def number_text(value: Any) -> str:
    """A gold number as text: 51.0 -> "51", 2.5 -> "2.5"; text passes through with commas removed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value).strip().replace(",", "")
    if float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")  # 2.0107e-06 -> "0.0000020107": no exponent to misread


def choice_text(question: str, choices: dict[str, str]) -> str:
    """The question followed by one line per option, ``A. text``."""
    return "\n".join([question.strip(), "", *(f"{label}. {text}" for label, text in choices.items())])


def shuffled_labels(options: list[str], correct: int, seed: str) -> tuple[dict[str, str], str]:
    """Options under letters in an order fixed by ``seed``; returns (label -> text, gold label).

    TruthfulQA lists the right mc1 answer first in every record; shown in that order, "always A" would
    score 1.0.
    """
    order = list(range(len(options)))
    random.Random(seed).shuffle(order)
    labels = [chr(ord("A") + i) for i in range(len(options))]
    return {labels[i]: options[j] for i, j in enumerate(order)}, labels[order.index(correct)]
