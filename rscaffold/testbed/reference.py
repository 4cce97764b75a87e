"""A reference predictor of the next signal that knows the scripted teacher's rules (METHOD.md section 8).

It sees what a student sees, the question text and the steps so far (text and signal), and gives
the exact distribution of the next step's signal under the teacher of a given ``ScriptedConfig``:
the best any predictor can do, so its accuracy and entropy say how predictable a setting's signals
are. How: the question is read back into its graph (:mod:`.reading`); for every plan the teacher may
have drawn up front (:class:`~rscaffold.testbed.teacher.Plan`), the trace is a fixed list of
*slots*, each a kind of step written with some probability (a coin flip, or 1); a forward pass over
the slots gives the probability of the steps seen so far and of each next kind; the plans are
weighed by their prior times that probability. Given the true plan instead, the same pass gives the
teacher's own distribution: what is left once the hidden plan is known, i.e. its coin flips.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rscaffold.config import ScriptedConfig
from rscaffold.signals import Signal
from rscaffold.testbed.discourse import MISREAD, SIGNAL
from rscaffold.testbed.graph import apply, is_ref
from rscaffold.testbed.reading import Reading, has_slip, read_question, step_kinds
from rscaffold.testbed.teacher import Plan

KIND_SIGNAL = {**SIGNAL, "answer": Signal.RESPONSE}


@dataclass(frozen=True)
class Slot:
    """A step the teacher may write here: its kind, the probability that it does, and for a computing
    step whether its value is a slip."""

    kind: str
    p: float = 1.0
    slip: bool | None = None


@dataclass(frozen=True)
class Seen:
    """What a predictor takes from one visible step: the kinds its wording fits, and any slip."""

    kinds: frozenset[str]
    slip: bool

    @classmethod
    def of(cls, signal: Signal, text: str) -> Seen:
        return cls(step_kinds(signal, text), has_slip(text))


# ---------------------------------------------------------------- the teacher's rules


def _choices(pool: Sequence[str], share: float) -> list[tuple[str | None, float]]:
    """``rng.choice(pool) if pool and rng.random() < share else None`` as a distribution."""
    if not pool:
        return [(None, 1.0)]
    out = [(None, 1.0 - share)] + [(x, share / len(pool)) for x in pool]
    return [(x, p) for x, p in out if p > 0]


def plans(r: Reading, cfg: ScriptedConfig) -> list[tuple[Plan, float]]:
    """Every plan the teacher may draw for this question, with its prior (``teacher.draw_plan``)."""
    if cfg.setting == "informative":
        return [(Plan(), 1.0)]
    realistic, last = cfg.setting == "realistic", r.derived[-1]
    out = []
    for wrong, pw in ((False, 1 - cfg.wrong_share), (True, cfg.wrong_share)) if realistic else ((False, 1.0),):
        safe = [x for x in r.derived if not (wrong and x == last)]
        for detour, pd in _choices(safe, cfg.detour_share) if realistic else [(None, 1.0)]:
            for recheck, pr in _choices(safe, cfg.recheck_share):
                for example, pe in _choices(r.derived, cfg.example_share):
                    out.append((Plan(wrong, detour, recheck, example), pw * pd * pr * pe))
    return [(plan, p) for plan, p in out if p > 0]


@lru_cache(maxsize=1024)
def _example_written(r: Reading, x: str) -> float:
    """Share of the operands a realistic Example may vary for which some value 1..12 works."""
    rel, refs = r.relations[x], [a for a in r.relations[x].args if is_ref(a)]

    def works(o: str) -> bool:
        for h in range(1, 13):
            vals = [h if a == o else (r.relations[a].value if is_ref(a) else a) for a in rel.args]
            if h != r.relations[o].value and apply(rel.op, *vals) is not None:
                return True
        return False

    return sum(map(works, refs)) / len(refs)


@lru_cache(maxsize=1024)
def _contrast_written(r: Reading, wrong: bool) -> float:
    """Probability that a realistic Contrast step, once decided on, finds something to say."""
    if r.distractors:
        return 1.0
    options = [x for x in r.derived if not (wrong and x == r.derived[-1])]
    if not options:
        return 0.0

    def misreads(x: str) -> bool:
        w = apply(MISREAD[r.relations[x].op], *r.operands(x))
        return w is not None and w != r.relations[x].value

    return sum(map(misreads, options)) / len(options)


def slots(r: Reading, cfg: ScriptedConfig, plan: Plan) -> list[Slot]:
    """The steps a trace of this question may hold, in order, under ``plan``."""
    if cfg.setting == "informative":
        return _informative_slots(r)
    realistic, last = cfg.setting == "realistic", r.derived[-1]
    out = [Slot("intro"), Slot("plan", cfg.plan_share), Slot("opinion", cfg.opinion_share)]
    for x in r.derived:
        out.append(Slot("compute", slip=x == plan.detour_at or (plan.wrong and x == last)))
        if x == plan.detour_at:
            out.append(Slot("correct"))
        if x != last:
            out.append(Slot("result", cfg.result_share))
        out.append(Slot("addition", cfg.addition_share))
        if x == plan.recheck_at:
            out.append(Slot("recheck"))
        if x == plan.example_at:
            out.append(Slot("example", _example_written(r, x) if realistic else 1.0))
    contrast = _contrast_written(r, plan.wrong) if realistic else 1.0
    return [*out, Slot("contrast", cfg.contrast_share * contrast), Slot("conclude"), Slot("answer")]


def _informative_slots(r: Reading) -> list[Slot]:
    """The informative setting's rules, read off the question alone."""
    out = [Slot("intro")]
    out += [Slot("plan")] if len(r.derived) >= 2 else []
    out += [Slot("opinion")] if r.distractors else []
    for x in r.derived:
        rel = r.relations[x]
        out += [Slot("contrast")] if rel.inverse else []
        out += [Slot("example")] if rel.op == "div" else []
        out.append(Slot("compute", slip=False))
        out += [Slot("recheck")] if rel.op in ("mul", "div") else []
        out += [Slot("addition")] if all(is_ref(a) for a in rel.args) else []
        out += [Slot("result")] if x != r.derived[-1] else []
    return [*out, Slot("conclude"), Slot("answer")]


# ---------------------------------------------------------------- the forward pass


def _next(trail: list[Slot], state: dict[int, float], out: np.ndarray) -> None:
    """Add to ``out`` the probability (times that of the steps so far) of each signal for the next step."""
    for pos, mass in state.items():
        for slot in trail[pos:]:
            out[KIND_SIGNAL[slot.kind]] += mass * slot.p
            mass *= 1.0 - slot.p
            if mass == 0:
                break


def _advance(trail: list[Slot], state: dict[int, float], seen: Seen) -> dict[int, float]:
    """The slot positions after one more visible step, weighted by how likely it was."""
    out: dict[int, float] = defaultdict(float)
    for pos, mass in state.items():
        for k in range(pos, len(trail)):
            slot = trail[k]
            if slot.kind in seen.kinds and (slot.slip is None or slot.slip == seen.slip):
                out[k + 1] += mass * slot.p
            mass *= 1.0 - slot.p
            if mass == 0:
                break
    return out


class ReferencePredictor:
    """The exact next-signal distribution under the scripted teacher of ``cfg``."""

    def __init__(self, cfg: ScriptedConfig):
        self.cfg = cfg

    def distributions(
        self, question: str, steps: Sequence[tuple[Signal, str]], plan: Plan | None = None
    ) -> list[np.ndarray]:
        """One distribution over :class:`Signal` per prefix of ``steps`` (empty, first step, ..., all);
        ``plan``: condition on the teacher's hidden plan (its own distribution). A prefix the rules
        cannot produce gets the uniform distribution."""
        r = read_question(question)
        seen = [Seen.of(sig, text) for sig, text in steps]
        total = np.zeros((len(steps) + 1, len(Signal)))
        for p, prior in [(plan, 1.0)] if plan is not None else plans(r, self.cfg):
            trail, state = slots(r, self.cfg, p), {0: prior}
            for i in range(len(steps) + 1):
                _next(trail, state, total[i])
                if i < len(steps):
                    state = _advance(trail, state, seen[i])
        mass = total.sum(axis=1, keepdims=True)
        uniform = np.full_like(total, 1.0 / len(Signal))
        return list(np.where(mass > 0, total / np.where(mass > 0, mass, 1.0), uniform))

    def predict(self, question: str, steps: Sequence[tuple[Signal, str]]) -> dict[Signal, float]:
        """The distribution of the signal of the step after ``steps``."""
        dist = self.distributions(question, steps)[-1]
        return {s: float(dist[s]) for s in Signal}
