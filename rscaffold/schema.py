"""Records (Question, Trace, Step) and their JSONL files, read and written with validation.

Every stage streams records through :func:`read_jsonl` and :func:`write_jsonl`: one line in memory
at a time, a bad line named by file, line number and field, and an output that appears only when it
is complete (written to a temporary file, then renamed).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
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


def field_error(path: str, lineno: int, error: ValidationError) -> InputError:
    """One line naming the file, the line, the field and what was wrong."""
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
        except RecursionError:
            raise InputError(f"{path}:{lineno}: invalid JSON: nested too deeply") from None
        except ValueError as e:  # e.g. an integer of more digits than Python converts
            raise InputError(f"{path}:{lineno}: invalid JSON: {str(e).splitlines()[0]}") from None
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
            raise field_error(str(path), lineno, e) from None
    if empty:
        raise InputError(f"{path}: file is empty: expected one {kind.__name__} record per line")


@contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file is ``.{name}.{pid}.*.tmp``: the temporary files of a killed writer (whose pid is
    gone) are removed the next time ``path`` is written. The output gets the mode a plain ``open``
    would give it (0o666 less the umask), not mkstemp's 0o600. A folder or an unwritable place is an
    InputError, raised before the caller's block runs.
    """
    path = Path(path)
    prepare_output(path)
    try:
        _remove_stale_temp_files(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise InputError(f"{path}: cannot write there ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            with contextlib.suppress(OSError):  # a file system without modes (FAT, some network mounts)
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prepare_output(path: Path) -> None:
    """Create the folder of the file ``path``; an InputError that says why if ``path`` cannot be a file."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the path of a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(p for p in path.parents if p.exists())
        raise InputError(f"{path}: cannot write there ({blocker} is a file, not a folder)") from None
    except OSError as e:
        raise InputError(f"{path}: cannot write there ({e.strerror or e})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):  # also a read-only file system
        raise InputError(f"{path}: cannot write there (no permission to write in {path.parent})")


def _remove_stale_temp_files(path: Path) -> None:
    """Remove the temporary files of ``path`` left by writers that no longer run (killed with SIGKILL)."""
    mine = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp")
    for sibling in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        found = mine.fullmatch(sibling.name)
        if found and not _alive(int(found.group(1))):
            sibling.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; a number too big to be a pid
        return True
    return True


def _umask() -> int:
    """The process's umask; read from /proc where it can be, since os.umask reads it only by setting it."""
    try:
        with open("/proc/self/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Record]) -> int:
    """Write records one per line, atomically; returns how many were written."""
    n = 0
    with atomic_writer(path) as f:
        for record in records:
            f.write(record.model_dump_json(exclude_defaults=True))
            f.write("\n")
            n += 1
    return n
