"""The generate stage: ask a teacher for a thinking trace per question (METHOD.md section 3).

Teachers are chosen from a plain dict. Traces whose final answer disagrees with the gold answer
are dropped by default (the paper is silent; we filter and report how many were dropped). Items a
teacher could not answer are never dropped silently: they come back in ``report["failures"]``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from rscaffold import runs
from rscaffold.config import Config, GenerateConfig
from rscaffold.runs import progress
from rscaffold.schema import Question, Trace, atomic_writer, prepare_output, read_jsonl, write_jsonl
from rscaffold.teachers import rejection_filter
from rscaffold.testbed.teacher import ScriptedTeacher

log = logging.getLogger(__name__)


class Teacher(Protocol):
    name: str

    def generate(self, questions: Iterable[Question]) -> Iterator[Trace]: ...


OnFailure = Callable[[dict[str, Any]], None]


def _api(cfg: GenerateConfig, seed: int, on_failure: OnFailure) -> Teacher:
    from rscaffold.teachers.openai_compat import ApiTeacher

    return ApiTeacher(cfg.api, seed, on_failure=on_failure)


def _hf(cfg: GenerateConfig, seed: int, on_failure: OnFailure) -> Teacher:
    from rscaffold.teachers.hf_local import HfTeacher

    return HfTeacher(cfg.hf, seed)


TEACHERS: dict[str, Callable[[GenerateConfig, int, OnFailure], Teacher]] = {
    "scripted": lambda cfg, seed, on_failure: ScriptedTeacher(cfg.scripted, seed),
    "openai": _api,
    "hf": _hf,
}


def run_file(cfg: Config, inp: Path, out: Path) -> dict[str, Any]:
    """Traces of the questions in ``inp`` into ``out``, those whose final answer disagrees with the gold
    answer dropped (``generate.filter_wrong``). An item the teacher could not answer goes, with its
    reason, into ``<out>.failures.jsonl`` the moment it fails (a crash loses none); the file is rewritten
    by each run and removed when nothing failed, so it never lists items a later run answered. The
    token ledger of an API teacher goes into ``<out>.ledger.json``."""
    counts: Counter[str] = Counter(generated=0, kept=0, dropped_wrong=0, failed=0)
    failures_path = out.with_name(out.name + ".failures.jsonl")
    prepare_output(out)
    try:
        with open(failures_path, "w", encoding="utf-8") as failures:

            def record(item: dict[str, Any]) -> None:
                counts["failed"] += 1
                failures.write(json.dumps(item) + "\n")
                failures.flush()

            teacher = TEACHERS[cfg.generate.teacher](cfg.generate, cfg.run.seed, record)
            write_jsonl(out, rejection_filter(_traces(teacher, inp, cfg), counts, cfg.generate.filter_wrong))
    finally:  # also when interrupted or failed: no empty failures file is left behind
        if not counts["failed"]:
            failures_path.unlink(missing_ok=True)
    if counts["failed"]:
        log.warning("generate: %d items failed; reasons in %s", counts["failed"], failures_path)
    summary: dict[str, Any] = {"teacher": cfg.generate.teacher, **counts}
    ledger = getattr(teacher, "ledger", None)
    if ledger is not None:
        summary["ledger"] = ledger.summary()
        with atomic_writer(out.with_name(out.name + ".ledger.json")) as f:
            json.dump(summary, f, indent=2)
    return summary


def _traces(teacher: Teacher, inp: Path, cfg: Config) -> Iterator[Trace]:
    """The teacher's traces of the questions in ``inp``, with a progress bar."""
    questions = read_jsonl(inp, Question)
    if hasattr(teacher, "total"):  # API teachers draw their own progress bar, with failures and ETA
        with open(inp, "rb") as f:
            teacher.total = cfg.generate.api.n * sum(1 for line in f if line.strip())
    else:
        questions = progress(questions, "generate")
    return teacher.generate(questions)


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The generate stage in a run folder: ``testbed/<generate.split>.jsonl`` -> ``traces.jsonl``."""
    inp = runs.require(runs.questions(run_dir, cfg.generate.split), "testbed", run_dir)
    return run_file(cfg, inp, runs.traces(run_dir))
