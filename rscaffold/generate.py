"""Stage 1 (generate): ask a teacher for a thinking trace per question (METHOD.md section 3).

Teachers are chosen from a plain dict. Traces whose final answer disagrees with the gold answer
are dropped by default (the paper is silent; we filter and report how many were dropped). Items a
teacher could not answer are never dropped silently: they come back in ``report["failures"]``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from rscaffold.config import GenerateConfig
from rscaffold.schema import Question, Trace
from rscaffold.teachers import rejection_filter
from rscaffold.testbed.teacher import ScriptedTeacher


class Teacher(Protocol):
    name: str

    def generate(self, questions: Iterable[Question]) -> Iterator[Trace]: ...


def _api(cfg: GenerateConfig, seed: int) -> Teacher:
    from rscaffold.teachers.openai_compat import ApiTeacher

    return ApiTeacher(cfg.api, seed)


def _hf(cfg: GenerateConfig, seed: int) -> Teacher:
    from rscaffold.teachers.hf_local import HfTeacher

    return HfTeacher(cfg.hf, seed)


TEACHERS: dict[str, Callable[[GenerateConfig, int], Teacher]] = {
    "scripted": lambda cfg, seed: ScriptedTeacher(cfg.scripted, seed),
    "openai": _api,
    "hf": _hf,
}


def run(
    questions: Iterable[Question],
    cfg: GenerateConfig,
    seed: int,
    counts: Counter[str],
    report: dict[str, Any] | None = None,
) -> Iterator[Trace]:
    """Traces for ``questions``; ``counts`` receives generated / kept / dropped_wrong / failed, and
    ``report`` (when given) the failed items with their reasons and the teacher's token ledger."""
    teacher = TEACHERS[cfg.teacher](cfg, seed)
    yield from rejection_filter(teacher.generate(questions), counts, cfg.filter_wrong)
    failures = list(getattr(teacher, "failures", []))
    counts["failed"] = len(failures)
    if report is not None:
        report["failures"] = failures
        ledger = getattr(teacher, "ledger", None)
        if ledger is not None:
            report["ledger"] = ledger.summary()
