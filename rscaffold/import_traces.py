"""The import stage: read existing trace files into the project's Trace records.

Three record shapes are understood, in JSONL or Parquet:
- ``shared``: the schema of ../shared/data/traces (``trace``, ``answer_text``, ``question``, ...);
- ``split``: separate reasoning and answer fields, as OpenAI-compatible servers return them
  (``reasoning_content`` or ``reasoning``, and ``content``);
- ``think``: one text field holding ``<think>...</think>`` followed by the answer.
Field names are configurable (``import.fields.*``) and may be dotted paths into nested records
(``choices.0.message.reasoning_content``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.config import Config, ImportConfig
from rscaffold.runs import progress
from rscaffold.schema import InputError, Trace, read_json_objects, write_jsonl

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def read_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location, record) from a JSONL or Parquet file, streaming."""
    path = str(path)
    if path.endswith((".parquet", ".pq")):
        yield from _read_parquet(path)
        return
    for lineno, obj in read_json_objects(path):
        yield f"{path}:{lineno}", obj


def _read_parquet(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read as Parquet ({e})") from None
    row = 0
    for batch in file.iter_batches(batch_size=256):
        for obj in batch.to_pylist():
            row += 1
            yield f"{path}:row {row}", obj
    if row == 0:
        raise InputError(f"{path}: file has no rows")


def get_path(obj: Any, dotted: str) -> Any:
    """``obj["a"]["b"][0]`` for ``"a.b.0"``; None where any part is missing."""
    for part in dotted.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def _text(obj: dict[str, Any], keys: tuple[str, ...], where: str, required: bool) -> tuple[str | None, str | None]:
    """The first of ``keys`` that holds a value: (key, text); a non-string value is an error."""
    keys = tuple(dict.fromkeys(keys))
    for key in keys:
        value = get_path(obj, key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InputError(f"{where}: field '{key}': expected a string, got {type(value).__name__}")
        return key, value
    if required:
        raise InputError(f"{where}: missing field: expected one of {', '.join(repr(k) for k in keys)}")
    return None, None


def split_think(text: str) -> tuple[str, str, bool]:
    """Split ``<think>thinking</think>answer`` into (thinking, answer, truncated).

    A missing ``<think>`` (some chat templates put it in the prompt) starts the thinking at the
    beginning; a missing ``</think>`` means generation stopped while thinking.
    """
    start = text.find(THINK_OPEN)
    close = text.find(THINK_CLOSE)
    if close == -1:
        return text[start + len(THINK_OPEN) if start != -1 else 0 :], "", True
    begin = start + len(THINK_OPEN) if 0 <= start < close else 0
    return text[begin:close], text[close + len(THINK_CLOSE) :], False


def _shape(obj: dict[str, Any], cfg: ImportConfig) -> str:
    if cfg.format != "auto":
        return cfg.format
    for key in (cfg.fields.thinking, "reasoning_content", "reasoning"):
        if get_path(obj, key) is not None:
            return "split"
    return "think"


def to_trace(obj: dict[str, Any], cfg: ImportConfig, where: str, fallback_id: str) -> Trace:
    """Build one Trace from one input record."""
    f = cfg.fields
    used: set[str] = set()
    truncated = bool(obj.get("truncated", False))
    if _shape(obj, cfg) == "think":
        key, text = _text(obj, (f.text, "text", "content", "response", "output", "completion"), where, True)
        if THINK_OPEN not in text and THINK_CLOSE not in text:
            raise InputError(f"{where}: field '{key}': no <think> block and no reasoning field")
        thinking, answer, cut = split_think(text)
        truncated = truncated or cut
        used.add(key)
    else:
        tkey, thinking = _text(obj, (f.thinking, "reasoning_content", "reasoning"), where, True)
        akey, answer = _text(obj, (f.answer, "content", "answer"), where, False)
        used.update(k for k in (tkey, akey) if k)
    _, question = _text(obj, (f.question, "prompt", "problem"), where, False)
    extras = {k: v for k, v in obj.items() if k not in used | {f.id, f.question, f.final_answer, f.gold, f.teacher}}
    return Trace(
        question_id=str(obj.get(f.id) or fallback_id),
        question=question or "",
        teacher=cfg.teacher or str(get_path(obj, f.teacher) or "unknown"),
        thinking=thinking,
        answer_text=answer or "",
        final_answer=_scalar(obj, f.final_answer),
        gold=_scalar(obj, f.gold),
        metadata=extras | {"truncated": truncated},
    )


def _scalar(obj: dict[str, Any], key: str) -> str | None:
    value = get_path(obj, key)
    return None if value is None else str(value)


def read_traces(path: str | Path, cfg: ImportConfig) -> Iterator[Trace]:
    """Stream the traces of one file."""
    stem = Path(path).stem
    for n, (where, obj) in enumerate(read_records(path), 1):
        yield to_trace(obj, cfg, where, f"{stem}-{n}")


def run_file(cfg: Config, inp: Path | None, out: Path) -> dict[str, Any]:
    """Trace records of ``inp`` (or ``import.path``) into ``out``."""
    source = inp or cfg.import_.path
    if source is None:
        raise InputError("import needs a trace file: --input FILE or import.path=FILE")
    return {"traces": write_jsonl(out, progress(read_traces(source, cfg.import_), "import"))}


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The import stage in a run folder: ``import.path`` -> ``traces.jsonl``."""
    return run_file(cfg, None, runs.traces(run_dir))
