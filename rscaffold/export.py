"""Export a run for the tools of the field: ``datasets`` folders and TRL's SFT formats.

``rscaffold export --run-dir RUN --output DIR`` writes, from whatever RUN holds of ``traces.jsonl``,
``labelled.jsonl`` and the training sets of ``build/`` (``rscaffold.build``):

- ``DIR/datasets/<name>/``: each as a ``datasets`` folder (``save_to_disk``; ``load_from_disk`` reads it),
  the records as the run holds them. Traces keep every field and their steps; their free-form
  ``metadata`` is one JSON string, since Arrow needs one type per column and teachers' metadata differ;
- ``DIR/prompt-completion/<set>.jsonl``: every training set as TRL's prompt-completion rows
  ``{id, prompt, completion}``: the prompt as build wrote it (the prompt template applied) and the text
  the project's trainer learns from it. A proposer set's completion is its steps and answer joined, the
  token stream of the ``scaffold`` recipe without its signal layers, which plain SFT has not; with
  ``signal_as_text`` each step starts with its signal's name, as ``train.signal_as_text`` trains it.
  ``SFTTrainer`` with ``completion_only_loss`` then trains on the trainer's own tokens and loss mask
  (``encode_pair``): TRL appends the eos token as the trainer does; ``bos`` is text put before every
  prompt, for bases whose sequences start with a bos token that their tokenizer does not add
  (``<bos>`` for the testbed and tiny bases; a pretrained chat model needs none);
- ``DIR/messages/<set>.jsonl``: the same pairs in TRL's conversational format ``{id, messages: [user,
  assistant]}`` (a chat template then wraps them; loss on the answer only is TRL's ``assistant_only_loss``);
- ``DIR/export.json``: the source run, the options, the build's prompt layout and each table's row count.

An empty set (``oracle_cot`` of a real teacher) is listed as skipped. ``DIR`` appears only when complete:
it is written in a hidden folder beside it, then renamed; an existing ``DIR`` is replaced only when an
earlier export wrote it. ``--push-to-hub OWNER/NAME`` then uploads every table as one config of a hub
dataset, split ``train`` (``traces``, ``cot``, ``cot-prompt-completion``, ``cot-messages``, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.base_models import HUB_ID
from rscaffold.schema import InputError, Trace, iter_lines, read_json_objects, read_jsonl
from rscaffold.signals import SIGNAL_TEXT, TITLES, Signal

FORMATS = ("datasets", "prompt-completion", "messages")
TRACE_FILES = {"traces": runs.traces, "labelled": runs.labelled}
MARKER = "export.json"
"""Written last into every export folder; only a folder holding it is ever replaced."""


# -- rows -----------------------------------------------------------------------------------------


def trace_row(trace: Trace) -> dict[str, Any]:
    """A trace as one table row: every field (defaults too, so all rows have one shape), metadata as JSON."""
    row = trace.model_dump(mode="json")
    row["metadata"] = json.dumps(row["metadata"], ensure_ascii=False, sort_keys=True)
    return row


def completion(record: dict[str, Any], where: str, signal_as_text: bool = False) -> str:
    """The text a recipe learns from a build record: a pair's completion, or a proposer record's steps
    and answer joined (each after its signal's name with ``signal_as_text``, as ``train.load_records``)."""
    if not isinstance(record.get("prompt"), str):
        raise InputError(f"{where}: field 'prompt': expected a string")
    if isinstance(record.get("completion"), str):
        return record["completion"]
    segments = record.get("segments")
    if not isinstance(segments, list) or not all(
        isinstance(s, dict) and isinstance(s.get("text"), str) for s in segments
    ):
        raise InputError(f"{where}: expected field 'completion' (a string) or 'segments' (a list of {{text, signal}})")
    if not signal_as_text:
        return "".join(s["text"] for s in segments)
    return "".join(SIGNAL_TEXT.format(title=TITLES[Signal(s["signal"])]) + s["text"] for s in segments)


def prompt_completion(record: dict[str, Any], where: str, bos: str = "", signal_as_text: bool = False) -> dict:
    """TRL's prompt-completion row of a build record (``bos``: see the module docstring)."""
    text = completion(record, where, signal_as_text)
    return {"id": record.get("id"), "prompt": bos + record["prompt"], "completion": text}


def messages(record: dict[str, Any], where: str, signal_as_text: bool = False) -> dict:
    """TRL's conversational row: the prompt as the user's turn (none when empty: the pretrain corpus),
    the completion as the assistant's."""
    text = completion(record, where, signal_as_text)
    turns = [{"role": "user", "content": record["prompt"]}] if record["prompt"] else []
    return {"id": record.get("id"), "messages": [*turns, {"role": "assistant", "content": text}]}


def build_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, record) of a build set, one line in memory at a time."""
    for lineno, obj in read_json_objects(path):
        yield f"{path}:{lineno}", obj


# -- tables ---------------------------------------------------------------------------------------


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise InputError("export needs the `datasets` package (pip install 'reasoning-scaffold[stack]')") from None
    return datasets


def features(first: dict[str, Any]) -> Any:
    """The column types of a table whose first row is ``first``, fixed up front: a column that is None in
    the first rows (``final_answer``, a step's ``confidence``) would otherwise get no type. None (types
    inferred) for a column this project does not write."""
    ds = _datasets()
    text, integer = ds.Value("string"), ds.Value("int64")
    step = dict.fromkeys(("text", "sep", "signal", "labelled_by", "true_signal"), text)
    step["confidence"] = ds.Value("float64")
    known = {
        **dict.fromkeys(("id", "prompt", "completion", "question_id", "question", "teacher", "thinking"), text),
        **dict.fromkeys(("answer_text", "final_answer", "gold", "metadata"), text),
        "signal": integer,
        "segments": ds.List({"text": text, "signal": integer}),
        "steps": ds.List(step),
    }
    if any(k not in known for k in first):
        return None
    return ds.Features({k: known[k] for k in first})


def _generate(rows: Callable[[], Iterator[dict[str, Any]]], desc: str) -> Iterator[dict[str, Any]]:
    yield from runs.progress(rows(), desc)


def write_dataset(rows: Callable[[], Iterator[dict[str, Any]]], folder: Path, cache: Path) -> int:
    """Stream ``rows()`` into a ``datasets`` folder (through Arrow files in ``cache``, never all in memory)."""
    ds = _datasets()
    first = next(rows(), None)
    if first is None:
        return 0
    kwargs = {"rows": rows, "desc": f"export datasets {folder.name}"}
    try:  # a fresh fingerprint: nothing is reused from an earlier export's cache
        table = ds.Dataset.from_generator(
            _generate, gen_kwargs=kwargs, features=features(first), cache_dir=str(cache), fingerprint=uuid.uuid4().hex
        )
    except ds.exceptions.DatasetGenerationError as e:  # wraps what the rows raised, a bad line's InputError too
        if isinstance(e.__cause__, InputError):
            raise e.__cause__ from None
        why = f"{type(e.__cause__).__name__}: {e.__cause__}"  # e.g. a row whose types differ from the first rows'
        raise InputError(f"{folder.name}: cannot store as a datasets table ({why})") from None
    table.save_to_disk(str(folder))
    return len(table)


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars (two per table) while exporting; the export shows its own progress."""
    ds = _datasets()
    shown = ds.is_progress_bar_enabled()
    ds.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            ds.enable_progress_bars()


def write_rows(rows: Iterator[dict[str, Any]], path: Path) -> int:
    """JSON lines, one row each (inside the export's hidden folder: the whole folder is renamed at the end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


# -- the run folder and the output folder ---------------------------------------------------------


def sources(run_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(trace files, build sets) of a run folder that exist: ``{name: path}`` each."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a run folder")
    traces = {name: path(run_dir) for name, path in TRACE_FILES.items() if path(run_dir).is_file()}
    build = runs.build_dir(run_dir)
    sets = {p.stem: p for p in sorted(build.glob("*.jsonl"))} if build.is_dir() else {}
    if not traces and not sets:
        raise InputError(f"{run_dir}: nothing to export (no traces.jsonl, labelled.jsonl or build/*.jsonl)")
    return traces, sets


def _empty(path: Path) -> bool:
    return next(iter_lines(path), None) is None


def check_output(out: Path) -> None:
    """``out`` must be new, empty, or an earlier export (never a run folder or a user's other files)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give a folder to export into")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(f"{out}: exists and is not an export folder (no {MARKER}); give a new or empty folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot write there ({e.strerror or e})") from None


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` that becomes ``out`` when the block succeeds and is removed when
    it fails (an interrupt too), so that ``out`` is never half written."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        yield tmp
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_run(
    run_dir: Path, out: Path, formats: tuple[str, ...] = FORMATS, bos: str = "", signal_as_text: bool = False
) -> dict[str, Any]:
    """Write the run's traces, labelled traces and training sets into ``out`` in ``formats`` (see the
    module docstring); returns what ``export.json`` holds."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(f"export: unknown format {unknown[0]!r}; known: {', '.join(FORMATS)}")
    traces, sets = sources(run_dir)
    if not sets and set(formats) - {"datasets"}:
        runs.require(runs.build_dir(run_dir), "build", run_dir)
        raise InputError(f"{runs.build_dir(run_dir)}: no training sets; run `rscaffold build --run-dir {run_dir}`")
    check_output(out)
    tables, skipped = {}, [name for name, path in sets.items() if _empty(path)]
    views = {
        "prompt-completion": partial(prompt_completion, bos=bos, signal_as_text=signal_as_text),
        "messages": partial(messages, signal_as_text=signal_as_text),
    }
    with quiet_datasets(), staging(out) as tmp:
        for name, path in {**traces, **sets}.items():
            if "datasets" in formats and name not in skipped:
                rows = _trace_rows(path) if name in traces else _set_rows(path)
                tables[f"datasets/{name}"] = write_dataset(rows, tmp / "datasets" / name, tmp / ".cache")
        for kind, view in views.items():
            for name, path in sets.items():
                if kind in formats and name not in skipped:
                    rows = (view(r, w) for w, r in runs.progress(build_records(path), f"export {kind} {name}"))
                    tables[f"{kind}/{name}"] = write_rows(rows, tmp / kind / f"{name}.jsonl")
        summary = {"run": str(run_dir), "formats": list(formats), "bos": bos, "signal_as_text": signal_as_text,
                   **_layout(run_dir), "tables": tables, "skipped_empty": skipped}  # fmt: skip
        (tmp / MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _trace_rows(path: Path) -> Callable[[], Iterator[dict[str, Any]]]:
    return lambda: (trace_row(t) for t in read_jsonl(path, Trace))


def _set_rows(path: Path) -> Callable[[], Iterator[dict[str, Any]]]:
    def rows() -> Iterator[dict[str, Any]]:
        for where, record in build_records(path):
            completion(record, where)  # the checks of the TRL views: a bad record fails in every format
            yield record

    return rows


def _layout(run_dir: Path) -> dict[str, Any]:
    """The prompt template and predictor query the build used (``build/stats.json``)."""
    path = runs.build_dir(run_dir) / "stats.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {k: saved.get(k) for k in ("prompt_template", "predictor_query")}


# -- the hub --------------------------------------------------------------------------------------


def hub_config(table: str) -> str:
    """A table's hub config: ``datasets/cot`` -> ``cot``, ``prompt-completion/cot`` -> ``cot-prompt-completion``."""
    kind, name = table.split("/", 1)
    return name if kind == "datasets" else f"{name}-{kind}"


def push_to_hub(out: Path, repo_id: str, private: bool | None = None) -> list[str]:
    """Upload every table of the export folder ``out`` as one config (split ``train``) of ``repo_id``."""
    if not HUB_ID.fullmatch(repo_id):
        raise InputError(f"{repo_id}: not a hub dataset id (owner/name)")
    ds = _datasets()
    tables = json.loads((out / MARKER).read_text(encoding="utf-8"))["tables"]
    pushed: list[str] = []
    with tempfile.TemporaryDirectory() as cache:
        for table in tables:
            path = out / table
            with quiet_datasets():  # the JSON lines' conversion; the upload shows its own progress
                data = (
                    ds.load_from_disk(str(path))
                    if path.is_dir()
                    else ds.Dataset.from_json(f"{path}.jsonl", cache_dir=cache)
                )
            try:
                data.push_to_hub(repo_id, config_name=hub_config(table), split="train", private=private)
            except Exception as e:  # the hub client raises its HTTP library's errors as well as OSError
                why = (str(e).strip().splitlines() or [""])[0]
                raise InputError(
                    f"{repo_id}: pushing {hub_config(table)} failed ({type(e).__name__}: {why}); {len(pushed)} of "
                    f"{len(tables)} configs pushed; the export in {out} is complete"
                ) from None
            pushed.append(hub_config(table))
    return pushed


# -- the command ----------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``rscaffold export``: its options, and :func:`main` as its function."""
    p = subparsers.add_parser(
        "export", help="a run's traces, labelled traces and training sets as datasets folders and TRL's SFT formats"
    )
    p.add_argument("--run-dir", type=Path, required=True, help="run folder to export (traces, labelled, build/)")
    p.add_argument("--output", type=Path, required=True, help="export folder (new, empty, or an earlier export)")
    p.add_argument("--format", choices=[*FORMATS, "all"], default="all", help="what to write (default: all)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="then upload every table to this hub dataset (online)")
    bos = "text before every prompt-completion prompt: the bos token of a base whose tokenizer does not add it"
    p.add_argument("--bos", default="", metavar="TEXT", help=bos + " (testbed and tiny bases: --bos '<bos>')")
    p.add_argument("--signal-as-text", action="store_true", help="proposer sets: each step after its signal's name")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    formats = FORMATS if args.format == "all" else (args.format,)
    if args.push_to_hub and not HUB_ID.fullmatch(args.push_to_hub):  # before any work
        raise InputError(f"{args.push_to_hub}: not a hub dataset id (owner/name)")
    summary = export_run(Path(args.run_dir), Path(args.output), formats, args.bos, args.signal_as_text)
    print(f"export: wrote {args.output}", file=sys.stderr)
    if args.push_to_hub:
        pushed = push_to_hub(Path(args.output), args.push_to_hub)
        print(f"export: pushed {len(pushed)} configs to {args.push_to_hub}", file=sys.stderr)
    print(json.dumps(summary["tables"]))
    return 0
