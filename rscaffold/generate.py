"""Stage 1 (generate): ask a teacher for a thinking trace per question (METHOD.md section 3).

Teachers are chosen from a plain dict. Traces whose final answer disagrees with the gold answer
are dropped by default (the paper is silent; we filter and report how many were dropped).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from rscaffold.config import GenerateConfig
from rscaffold.schema import Question, Trace
from rscaffold.testbed.teacher import ScriptedTeacher


class Teacher(Protocol):
    name: str

    def generate(self, questions: Iterable[Question]) -> Iterator[Trace]: ...


TEACHERS: dict[str, Callable[[GenerateConfig, int], Teacher]] = {
    "scripted": lambda cfg, seed: ScriptedTeacher(cfg.scripted, seed),
}

_NUMBER_NOISE = re.compile(r"[,\s$]|\\!|\\,")


def normalise_answer(answer: str) -> str:
    """A lenient canonical form for comparing short answers: no commas, spaces or dollar signs,
    lowercase, and numbers written the same way (``12.0`` -> ``12``)."""
    text = _NUMBER_NOISE.sub("", answer).lower().rstrip(".")
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else repr(number)


def answers_agree(final: str | None, gold: str | None) -> bool | None:
    """Whether a trace's final answer equals the gold answer; None when either is missing."""
    if final is None or gold is None:
        return None
    return normalise_answer(final) == normalise_answer(gold)


def run(questions: Iterable[Question], cfg: GenerateConfig, seed: int, counts: Counter[str]) -> Iterator[Trace]:
    """Traces for ``questions``; ``counts`` receives generated / kept / dropped."""
    teacher = TEACHERS[cfg.teacher](cfg, seed)
    for trace in teacher.generate(questions):
        counts["generated"] += 1
        if cfg.filter_wrong and answers_agree(trace.final_answer, trace.gold) is False:
            counts["dropped_wrong"] += 1
            continue
        counts["kept"] += 1
        yield trace
