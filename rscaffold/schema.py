"""Records (Question, Trace, Step) and their JSONL files, read and written with validation.

Every stage streams records through :func:`read_jsonl` and :func:`write_jsonl`: one line in memory
at a time, a bad line named by file, line number and field, and an output that appears only when it
is complete (written to a temporary file, then renamed).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from rscaffold.signals import Signal

BOUNDARY = "\n\n"
"""The end of a step in the students' text (a blank line; METHOD.md section 3, "Segment")."""
ANSWER_MARK = "###Answer:"
"""What starts the answer in the students' training text (``###Answer: \\boxed{...}``)."""

SignalField = Annotated[
    Signal,
    BeforeValidator(Signal.parse),
    PlainSerializer(lambda s: s.key, return_type=str),
]
LabelledBy = Literal["keyword", "judge", "learned", "truth", "structure"]
"""How a step got its signal; ``structure``: the answer step is Response Generation by definition."""


class InputError(ValueError):
    """Bad user input (file, record or option): the CLI prints it on one line and exits 2."""


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Question(Record):
    """One problem to reason about."""

    id: str
    text: str
    gold: str | None = None
    task: str = "unknown"
    metadata: dict[str, Any] = Field(default_factory=dict)


class Step(Record):
    """One step of a trace: the text between blank lines, and the separator that follows it."""

    text: str
    sep: str = ""
    signal: SignalField | None = None
    labelled_by: LabelledBy | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    true_signal: SignalField | None = None
    """The signal the step was written with, where the generator knows it (the scripted teacher)."""


class Trace(Record):
    """A teacher's answer to a question: the thinking text, the answer text, and the steps."""

    question_id: str
    question: str = ""
    teacher: str = "unknown"
    thinking: str
    answer_text: str = ""
    final_answer: str | None = None
    gold: str | None = None
    steps: list[Step] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Decoded(Record):
    """A student's output for one question: the steps it wrote (with the signals that guided them)
    and the answer, as ``rscaffold decode`` writes it and ``rscaffold evaluate`` scores it."""

    question_id: str
    method: str
    """The student's recipe: scaffold, cot-sft, long-sft, answer-sft, original, ..."""
    signal_source: str = "none"
    """Where the step signals came from: predictor-head, predictor-generative, golden, random, none."""
    benchmark: str = "testbed"
    split: str = ""
    question: str = ""
    gold: str | None = None
    steps: list[Step] = Field(default_factory=list)
    answer_text: str = ""
    tokens: int = 0
    """Tokens the student generated for this question (steps and answer)."""
    stop_reason: str = ""
    """Why decoding ended: response, gate, max_steps, max_tokens, eos, answer_in_step."""
    metadata: dict[str, Any] = Field(default_factory=dict)


R = TypeVar("R", bound=Record)


def _field_error(path: str, lineno: int, error: ValidationError) -> InputError:
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return InputError(f"{path}:{lineno}: invalid JSON: {first['msg'].removeprefix('Invalid JSON: ')}")
    field = ".".join(str(p) for p in first["loc"]) or "(record)"
    got = first.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {json.dumps(got)[:60]})" if _jsonable(got) else ""
    more = f" and {error.error_count() - 1} more" if error.error_count() > 1 else ""
    return InputError(f"{path}:{lineno}: field '{field}': {first['msg']}{got_text}{more}")


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of the non-blank lines of a UTF-8 file, one line in memory at a time."""
    path = str(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the with below; open errors get their own message)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                ) from None
            if line.strip():
                yield lineno, line


def read_json_objects(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) from a JSONL file; an empty file or a bad line is an InputError."""
    empty = True
    for lineno, line in iter_lines(path):
        empty = False
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: invalid JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj
    if empty:
        raise InputError(f"{path}: file is empty: expected one JSON record per line")


def read_jsonl(path: str | os.PathLike[str], kind: type[R]) -> Iterator[R]:
    """Stream validated records of type ``kind`` from a JSONL file."""
    empty = True
    for lineno, line in iter_lines(path):
        empty = False
        try:
            yield kind.model_validate_json(line)
        except ValidationError as e:
            raise _field_error(str(path), lineno, e) from None
    if empty:
        raise InputError(f"{path}: file is empty: expected one {kind.__name__} record per line")


@contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Record]) -> int:
    """Write records one per line, atomically; returns how many were written."""
    n = 0
    with atomic_writer(path) as f:
        for record in records:
            f.write(record.model_dump_json(exclude_defaults=True))
            f.write("\n")
            n += 1
    return n
