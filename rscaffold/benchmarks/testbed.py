"""The embedded testbed as a benchmark: the questions of one split made by ``rscaffold testbed``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rscaffold.schema import InputError, Question, read_jsonl


def load(path: str | Path, split: str = "test_id") -> Iterator[Question]:
    """Questions of ``split`` from a folder written by ``write_splits``, or of one JSONL file."""
    path = Path(path)
    if path.is_dir():
        file = path / f"{split}.jsonl"
        if not file.is_file():
            found = ", ".join(sorted(p.stem for p in path.glob("*.jsonl"))) or "none"
            raise InputError(f"{path}: no split {split!r} ({file.name} missing; splits there: {found})")
        path = file
    yield from read_jsonl(path, Question)
