"""The scripted teacher: long thinking traces about testbed problems, with the true signal of every step.

It writes what a reasoning model writes (METHOD.md section 7): it plans which quantities it needs,
computes each one, states intermediate results, elaborates, gives an example, voices an opinion
about a distractor, re-checks a result, sometimes takes a detour (a wrong value, then a Contrast step
that corrects it), and concludes; then the answer text ending in ``###Answer: \\boxed{N}``. About a
quarter of the steps open without a keyword of the paper's table, as on real traces, so stage 1
cannot label them. Every trace is a function of (seed, question id) only.

``ScriptedConfig.setting`` chooses how the steps are chosen (experiments/TESTBED_SETTINGS.md):
``realistic`` as above, most signals by coin flip; ``clean`` the same flow without slips, misreads or
hypothetical numbers (a Contrast step only confirms, an Example uses the problem's own numbers);
``informative`` the clean content with every step's kind fixed by rules on what the student can see
(the question's wording and the steps so far) and openers of each signal's own.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rscaffold.config import ScriptedConfig
from rscaffold.schema import InputError, Question, Step, Trace
from rscaffold.signals import Signal
from rscaffold.testbed.discourse import BODIES, LOOKS, MISREAD, OPENERS, OPNAME, OWN_OPENERS, SIGNAL, WHY
from rscaffold.testbed.graph import SYMBOL, apply, is_ref
from rscaffold.testbed.phrasing import INVERSE, cap, template_index


@dataclass(frozen=True)
class Plan:
    """What a trace decides before its first step; later choices are coin flips as it goes."""

    wrong: bool = False
    detour_at: str | None = None
    recheck_at: str | None = None
    example_at: str | None = None


class _Script:
    """One trace being written: the problem's graph, the values the trace believes, the steps so far."""

    def __init__(self, q: Question, cfg: ScriptedConfig, rng: random.Random):
        meta = q.metadata
        self.cfg, self.rng, self.item = cfg, rng, meta["item"]
        self.node = {d["id"]: d for d in meta["quantities"]}
        self.target = meta["target"]
        self.derived = [d["id"] for d in meta["quantities"] if d["needed"] and d["op"] != "given"]
        self.distractors = [d["id"] for d in meta["quantities"] if not d["needed"]]
        self.stated = {qid: d["value"] for qid, d in self.node.items()}
        self.steps: list[tuple[Signal, str]] = []
        self.kinds: list[str] = []

    def name(self, arg: Any) -> str:
        return self.node[arg]["name"] if is_ref(arg) else str(arg)

    def opens_with_name(self, text: str) -> bool:
        """True when ``text`` starts with a capitalised name ("M has", not "Multiply")."""
        first = text.split(" ", 1)[0].removesuffix("'s")
        return any(d["name"] == first for d in self.node.values())

    def say(self, body_key: str, **fields: Any) -> None:
        """Append one step: an opener drawn by the keyword shares, then a body of this kind."""
        kind = body_key.split("_")[0]
        table = OWN_OPENERS if self.cfg.setting == "informative" else OPENERS
        openers, u = table[kind], self.rng.random()
        if u < self.cfg.keyword_free_share:
            pool = openers.free
        # The informative openers have none of another signal's keywords (``other`` is empty).
        elif u < self.cfg.keyword_free_share + self.cfg.other_keyword_share and openers.other:
            pool = openers.other
        else:
            pool = openers.keyword
        body = self.rng.choice(BODIES[body_key]).format(item=self.item, **fields)
        self.steps.append((SIGNAL[kind], cap(f"{self.rng.choice(pool)} {body}")))
        self.kinds.append(kind)

    # -------------------------------------------------------------- arithmetic as the trace sees it

    def expr(self, qid: str, override: dict | None = None) -> str:
        """``5 + 3``: the operation of ``qid`` on the values the trace believes (or ``override``)."""
        vals = {**self.stated, **(override or {})}
        a, b = (vals[x] if is_ref(x) else x for x in self.node[qid]["args"])
        return f"{a} {SYMBOL[self.node[qid]['op']]} {b}"

    def symbolic(self, qid: str) -> str:
        a, b = (self.name(x) for x in self.node[qid]["args"])
        return f"{a} {SYMBOL[self.node[qid]['op']]} {b}"

    def slip(self, value: int) -> int:
        """A plausible arithmetic slip: off by one, two or ten, never negative."""
        return self.rng.choice(
            [w for w in (value + 1, value - 1, value + 2, value + 10, value - 10) if w >= 0],
        )

    # -------------------------------------------------------------- steps

    def plan(self) -> None:
        deps = "; ".join(
            f"{self.name(x)} comes from {' and '.join(self.name(a) for a in self.node[x]['args'])}"
            for x in self.derived
        )
        order = ", then ".join(self.name(x) for x in self.derived)
        self.say("plan", deps=deps, order=order, n=len(self.derived))

    def opinion(self) -> None:
        t = self.name(self.target)
        if self.distractors:
            self.say("opinion_distractor", d=self.name(self.rng.choice(self.distractors)), t=t)
        else:
            self.say("opinion_plain", t=t)

    def compute(self, qid: str, value: int) -> None:
        """The step that works out ``qid``; ``value`` is what the trace gets (wrong on a slip)."""
        self.stated[qid] = value
        fields = {"x": self.name(qid), "expr": self.expr(qid), "v": value, "sym": self.symbolic(qid)}
        if not self.cfg.restate_facts:
            self.say("compute_plain", **fields)
            return
        fact = self.node[qid]["fact"].rstrip(".")
        lower = fact if self.opens_with_name(fact) else fact[:1].lower() + fact[1:]
        refs = [a for a in self.node[qid]["args"] if is_ref(a)]
        operands = " and ".join(f"{self.name(a)} has {self.stated[a]}" for a in refs)
        self.say("compute_restate", fact=lower, Fact=fact, operands=operands, **fields)

    def correct(self, qid: str, wrong: int) -> None:
        value = self.node[qid]["value"]
        self.stated[qid] = value
        self.say("correct", x=self.name(qid), expr=self.expr(qid), v=value, w=wrong)

    def addition(self, qid: str) -> None:
        x, v = self.name(qid), self.stated[qid]
        refs = [a for a in self.node[qid]["args"] if is_ref(a)]
        users = [y for y in self.derived if qid in self.node[y]["args"]]
        w = self.stated[refs[0]]
        compare = {"x": x, "v": v, "o": self.name(refs[0]), "w": w, "cmp": _compare(v, w)}
        options = [("addition_compare", compare)]
        if users:
            options.append(("addition_feeds", {"x": x, "v": v, "y": self.name(users[0])}))
        once = [a for a in refs if sum(a in self.node[y]["args"] for y in self.derived) == 1]
        if once:
            options.append(("addition_done", {"o": self.name(once[0])}))
        key, fields = self.rng.choice(options)
        self.say(key, **fields)

    def example(self, qid: str) -> None:
        """What ``qid`` would be if one operand were different; skipped when no small value works.
        Outside the realistic setting, the relation illustrated with the problem's own numbers."""
        if self.cfg.setting != "realistic":
            self.example_actual(qid)
            return
        args = self.node[qid]["args"]
        o = self.rng.choice([a for a in args if is_ref(a)])
        for h in self.rng.sample(range(1, 13), 12):
            vals = [h if a == o else (self.stated[a] if is_ref(a) else a) for a in args]
            r = apply(self.node[qid]["op"], *vals)
            if h != self.stated[o] and r is not None:
                fields = {"o": self.name(o), "h": h, "w": self.stated[o], "x": self.name(qid), "r": r}
                self.say("example", expr=self.expr(qid, {o: h}), **fields)
                return

    def example_actual(self, qid: str) -> None:
        a, b = (self.stated[x] if is_ref(x) else x for x in self.node[qid]["args"])
        self.say(f"example_{self.node[qid]['op']}", a=a, b=b, expr=self.expr(qid), r=self.stated[qid])

    def recheck(self, qid: str) -> None:
        self.say("recheck", x=self.name(qid), expr=self.expr(qid), v=self.stated[qid])

    def contrast(self, avoid: str | None) -> None:
        """Rule out a distractor, or a misreading of one relation (another operation); outside the
        realistic setting, confirm one relation instead."""
        if self.cfg.setting != "realistic":
            self.confirm(self.rng.choice(self.derived))
            return
        options = [x for x in self.derived if x != avoid]
        if options and (not self.distractors or self.rng.random() < 0.5):
            qid = self.rng.choice(options)
            op = self.node[qid]["op"]
            vals = [self.stated[a] if is_ref(a) else a for a in self.node[qid]["args"]]
            w = apply(MISREAD[op], *vals)
            if w is not None and w != self.stated[qid]:
                wexpr = f"{vals[0]} {SYMBOL[MISREAD[op]]} {vals[1]}"
                self.say(
                    "contrast_misread",
                    x=self.name(qid),
                    wexpr=wexpr,
                    w=w,
                    why=WHY[op],
                    expr=self.expr(qid),
                    v=self.stated[qid],
                )
                return
        if self.distractors:
            d = self.rng.choice(self.distractors)
            self.say("contrast_distractor", d=self.name(d), t=self.name(self.target))

    def confirm(self, qid: str) -> None:
        op = self.node[qid]["op"]
        self.say("contrast_confirm", x=self.name(qid), opname=OPNAME[op], expr=self.expr(qid), v=self.stated[qid])

    def inverse(self, qid: str) -> bool:
        """True when the fact stating ``qid`` is worded with the inverse operation's words."""
        d = self.node[qid]
        key = d["op"] + "_" + "".join("q" if is_ref(a) else "c" for a in d["args"])
        names = {k: n["name"] for k, n in self.node.items()}
        return template_index(key, d["fact"], names, self.item, qid, d["args"], d["value"]) in INVERSE.get(key, ())

    def check_wording(self, qid: str) -> None:
        """A Contrast step before an inverse wording: what it reads like, and what it is."""
        op = self.node[qid]["op"]
        self.say("contrast_inverse", x=self.name(qid), looks=LOOKS[op], opname=OPNAME[op], sym=self.symbolic(qid))

    def answer(self) -> str:
        t, v = self.name(self.target), self.stated[self.target]
        summary = ", ".join(f"{self.name(x)} = {self.expr(x)} = {self.stated[x]}" for x in self.derived)
        return self.rng.choice(BODIES["answer"]).format(summary=cap(summary), T=cap(t), v=v, item=self.item)


def _compare(a: int, b: int) -> str:
    return "more than" if a > b else "less than" if a < b else "the same as"


def draw_plan(s: _Script) -> Plan:
    """The trace's first draws; the clean setting draws no slip, the informative one nothing."""
    cfg, rng, last = s.cfg, s.rng, s.derived[-1]
    if cfg.setting == "informative":
        return Plan()
    realistic = cfg.setting == "realistic"
    wrong = realistic and rng.random() < cfg.wrong_share
    # The slip of a wrong trace is on the last operation and must not be caught, so neither a
    # detour nor a re-check touches that operation.
    safe = [x for x in s.derived if not (wrong and x == last)]
    detour_at = rng.choice(safe) if realistic and safe and rng.random() < cfg.detour_share else None
    recheck_at = rng.choice(safe) if safe and rng.random() < cfg.recheck_share else None
    example_at = rng.choice(s.derived) if rng.random() < cfg.example_share else None
    return Plan(wrong, detour_at, recheck_at, example_at)


def _write(s: _Script) -> dict[str, bool]:
    """Write the thinking steps of one trace; returns its flags (``wrong``, ``detour``)."""
    plan = draw_plan(s)
    if s.cfg.setting == "informative":
        _write_informative(s)
    else:
        _write_drawn(s, plan)
    return {"wrong": plan.wrong, "detour": plan.detour_at is not None}


def _write_drawn(s: _Script, plan: Plan) -> None:
    """The realistic and clean flow: a plan drawn up front, then a coin flip per optional step."""
    cfg, rng, last = s.cfg, s.rng, s.derived[-1]
    wrong, detour_at, recheck_at, example_at = plan.wrong, plan.detour_at, plan.recheck_at, plan.example_at
    s.say("intro", t=s.name(s.target))
    if rng.random() < cfg.plan_share:
        s.plan()
    if rng.random() < cfg.opinion_share:
        s.opinion()
    for x in s.derived:
        true = s.node[x]["value"]
        s.compute(x, s.slip(true) if x == detour_at or (wrong and x == last) else true)
        if x == detour_at:
            s.correct(x, s.stated[x])
        if x != last and rng.random() < cfg.result_share:
            s.say("result", x=s.name(x), v=s.stated[x])
        if rng.random() < cfg.addition_share:
            s.addition(x)
        if x == recheck_at:
            s.recheck(x)
        if x == example_at:
            s.example(x)
    if rng.random() < cfg.contrast_share:
        s.contrast(avoid=last if wrong else None)
    s.say("conclude", t=s.name(s.target), v=s.stated[s.target])


def _write_informative(s: _Script) -> None:
    """Every step's kind follows from what the student sees: a plan when there are two operations or
    more, an opinion when there is a distractor, and around each operation a Contrast check before an
    inverse wording, an Example before a division (a split into parts), a re-check after a product or
    a division, an elaboration after a relation of two named quantities, a result unless it is the last."""
    last = s.derived[-1]
    s.say("intro", t=s.name(s.target))
    if len(s.derived) >= 2:
        s.plan()
    if s.distractors:
        s.opinion()
    for x in s.derived:
        op, args = s.node[x]["op"], s.node[x]["args"]
        if s.inverse(x):
            s.check_wording(x)
        if op == "div":
            s.example_actual(x)
        s.compute(x, s.node[x]["value"])
        if op in ("mul", "div"):
            s.recheck(x)
        if all(is_ref(a) for a in args):
            s.addition(x)
        if x != last:
            s.say("result", x=s.name(x), v=s.stated[x])
    s.say("conclude", t=s.name(s.target), v=s.stated[s.target])


def cot_solution(s: _Script) -> str:
    """The equations-only solution (true values) that the CoT SFT baseline trains on."""
    lines = [f"{cap(s.name(x))} = {s.symbolic(x)} = {s.expr(x)} = {s.node[x]['value']}" for x in s.derived]
    return "\n".join([*lines, f"###Answer: \\boxed{{{s.node[s.target]['value']}}}"])


def _steps(signals_texts: list[tuple[Signal, str]], answer: str) -> list[Step]:
    last = len(signals_texts) - 1
    steps = [
        Step(text=text, sep="" if i == last else "\n\n", signal=sig, true_signal=sig, labelled_by="truth")
        for i, (sig, text) in enumerate(signals_texts)
    ]
    response = Signal.RESPONSE
    return [*steps, Step(text=answer, signal=response, true_signal=response, labelled_by="truth")]


class ScriptedTeacher:
    """A teacher without a model: long thinking traces about testbed questions, true signals included."""

    name = "scripted"

    def __init__(self, cfg: ScriptedConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = seed

    def generate(self, questions: Iterable[Question]) -> Iterator[Trace]:
        """One trace per question, in order; each depends only on the seed and the question id."""
        for q in questions:
            yield self.trace(q)

    def trace(self, q: Question) -> Trace:
        if q.task != "testbed" or "quantities" not in q.metadata:
            raise InputError(
                f"question {q.id!r}: the scripted teacher needs testbed questions (task 'testbed' with a "
                f"graph in metadata), got task {q.task!r}; make them with `rscaffold testbed`"
            )
        s = self._script(q)
        cot = cot_solution(s)
        flags = _write(s)
        answer = s.answer()
        return Trace(
            question_id=q.id,
            question=q.text,
            teacher=self.name,
            thinking="\n\n".join(text for _, text in s.steps),
            answer_text=answer,
            final_answer=str(s.stated[s.target]),
            gold=q.gold,
            steps=_steps(s.steps, answer),
            metadata={**flags, "cot_solution": cot},
        )

    def plan(self, q: Question) -> Plan:
        """The plan the trace of ``q`` draws first, quantities by name (hidden from the student; for
        reference measurements)."""
        s = self._script(q)
        plan = draw_plan(s)
        name = {None: None} | {qid: d["name"] for qid, d in s.node.items()}
        return Plan(plan.wrong, name[plan.detour_at], name[plan.recheck_at], name[plan.example_at])

    def _script(self, q: Question) -> _Script:
        # A string seed is hashed with SHA-512, so the trace does not depend on order or batching.
        return _Script(q, self.cfg, random.Random(f"rscaffold-scripted:{self.seed}:{q.id}"))
