"""The import stage: read existing trace files into the project's Trace records.

Three record shapes are understood, in JSONL, Parquet, a ``datasets`` folder (written by ``save_to_disk``:
a Dataset, or a DatasetDict and one of its splits) or a Hugging Face hub dataset id (``owner/name``,
online, through ``datasets.load_dataset``):
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
from rscaffold.base_models import HUB_ID
from rscaffold.config import Config, ImportConfig
from rscaffold.runs import progress
from rscaffold.schema import InputError, Trace, read_json_objects, write_jsonl

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".pq", ".csv", ".txt", ".gz")
"""A missing path ending so is a mistyped file, never a hub id (``runs/traces.jsonl`` looks like ``owner/name``)."""


def is_hub_id(source: str | Path) -> bool:
    """Whether ``source`` names a hub dataset (``owner/name``) rather than a local file or folder."""
    source = str(source)
    return bool(HUB_ID.fullmatch(source)) and not source.lower().endswith(FILE_SUFFIXES) and not Path(source).exists()


def read_records(path: str | Path, split: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location, record) from a JSONL or Parquet file, a ``datasets`` folder or a hub dataset id,
    streaming. ``split``: the split of a DatasetDict (needed when it has several) or of the hub dataset."""
    path = str(path)
    if Path(path).is_dir():
        yield from _read_dataset(path, split, _load_folder(path))
        return
    if is_hub_id(path):
        where = f"{path}[{split}]" if split is not None else path
        yield from _read_dataset(where, None, _load_hub(path, split))
        return
    if split is not None:
        raise InputError(f"{path}: a split ({split!r}) goes with a datasets folder or a hub id, not a file")
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


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise InputError(
            "a datasets folder or hub id needs the `datasets` package (pip install 'reasoning-scaffold[stack]')"
        ) from None
    return datasets


def _load_folder(path: str) -> Any:
    """The Dataset or DatasetDict that ``save_to_disk`` wrote in ``path``."""
    try:
        return _datasets().load_from_disk(path)
    except FileNotFoundError:  # what load_from_disk raises for a folder it did not write
        raise InputError(f"{path}: a folder, but not one written by datasets' save_to_disk") from None


def _load_hub(hub_id: str, split: str | None) -> Any:
    """``load_dataset(hub_id, split=split)``; offline, unknown or gated ids end in one clear line."""
    datasets = _datasets()
    try:
        return datasets.load_dataset(hub_id, split=split)
    except Exception as e:  # ConnectionError offline, DatasetNotFoundError, a bad split (ValueError), HTTP errors
        why = (str(e).strip().splitlines() or [""])[0]
        raise InputError(
            f"{hub_id}: cannot load this dataset from the Hugging Face hub ({type(e).__name__}: {why}); "
            "give a local file or datasets folder instead"
        ) from None


def _read_dataset(where: str, split: str | None, data: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a Dataset, or of one split of a DatasetDict, as (location, record)."""
    if isinstance(data, _datasets().DatasetDict):
        splits = list(data)
        if split is None and len(splits) != 1:
            names = ", ".join(splits)
            raise InputError(
                f"{where}: a DatasetDict with splits {names}: choose one (--split NAME, or import.split in a run)"
            )
        split = split if split is not None else splits[0]
        if split not in data:
            raise InputError(f"{where}: no split {split!r}; its splits: {', '.join(splits)}")
        data, where = data[split], f"{where}[{split}]"
    elif split is not None:
        raise InputError(f"{where}: holds one Dataset, not a DatasetDict: it has no split {split!r} to choose")
    if len(data) == 0:
        raise InputError(f"{where}: the dataset has no rows")
    for row, obj in enumerate(data, 1):
        yield f"{where}:row {row}", obj


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


def read_traces(path: str | Path, cfg: ImportConfig, split: str | None = None) -> Iterator[Trace]:
    """Stream the traces of one file, ``datasets`` folder or hub dataset (``split``: see :func:`read_records`)."""
    stem = Path(str(path)).name if Path(str(path)).is_dir() else Path(str(path)).stem
    for n, (where, obj) in enumerate(read_records(path, split), 1):
        yield to_trace(obj, cfg, where, f"{stem}-{n}")


def run_file(cfg: Config, inp: Path | str | None, out: Path, split: str | None = None) -> dict[str, Any]:
    """Trace records of ``inp`` (or ``import.path``: a file, a datasets folder or a hub id) into ``out``."""
    source, split = inp or cfg.import_.path, split or cfg.import_.split
    if source is None:
        raise InputError("import needs a trace file: --input FILE or import.path=FILE")
    if not Path(str(source)).exists() and not is_hub_id(source):
        raise InputError(f"{source}: not found (neither a file, a datasets folder nor a hub id owner/name)")
    return {"traces": write_jsonl(out, progress(read_traces(source, cfg.import_, split), "import"))}


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The import stage in a run folder: ``import.path`` -> ``traces.jsonl``."""
    return run_file(cfg, None, runs.traces(run_dir))
