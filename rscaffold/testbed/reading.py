"""What a student sees of a testbed trace, read back with the teacher's rules: the graph from the
question text, and the kind of a step (intro, compute, result, ...) from its text.

The question states every fact in one sentence from :data:`phrasing.TEMPLATES`, so its text alone
determines the graph: each sentence is matched against every template, and a sentence that two
templates fit with different defined quantities ("A has 3 times as many as B": A = 3B or B = A / 3)
is settled by the rule that every quantity is stated by exactly one fact. The reference predictor
(:mod:`.reference`) uses nothing else; the tests check the reading against the hidden graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from rscaffold.signals import Signal
from rscaffold.testbed import phrasing
from rscaffold.testbed.discourse import BODIES, OPENERS, OWN_OPENERS, SIGNAL
from rscaffold.testbed.graph import apply, is_ref

Arg = str | int


@dataclass(frozen=True)
class Relation:
    """One fact: ``name`` is given (``op == "given"``, ``value``) or ``op`` of ``args`` (names, numbers)."""

    name: str
    op: str
    args: tuple[Arg, ...]
    key: str
    template: int
    value: int | None = None

    @property
    def inverse(self) -> bool:
        """Worded with the inverse operation's words (``phrasing.INVERSE``)."""
        return self.template in phrasing.INVERSE.get(self.key, ())


@dataclass(frozen=True, eq=False)  # hashed by identity, so facts about one reading can be cached
class Reading:
    """A question read back: every relation with its value, the target, and the needed operations in
    the order a solution computes them (each uses the one before)."""

    relations: dict[str, Relation]
    target: str
    derived: tuple[str, ...]
    distractors: tuple[str, ...]

    def operands(self, name: str) -> list[int]:
        return [self.relations[a].value if is_ref(a) else a for a in self.relations[name].args]


# ---------------------------------------------------------------- the question


_POOL = frozenset(n for pool in phrasing.NAME_POOLS.values() for n in pool)
# Any name's shape (a letter, a word, "the red box"); a match is then checked against the pools.
_NAME = r"[A-Z][a-z]*|[Tt]he [a-z]+ [a-z]+"


def _fields() -> dict[str, str]:
    name = _NAME
    return {"x": name, "a": name, "b": name, "c": r"\d+", "v": r"\d+", "item": "|".join(phrasing.ITEMS)}


def _pattern(template: str, fields: dict[str, str]) -> re.Pattern[str]:
    """A template as a regex; a placeholder's second use must repeat its first match."""
    out, seen = [], set()
    for i, piece in enumerate(re.split(r"\{(\w+)\}", template)):
        if i % 2 == 0:
            out.append(re.escape(piece))
        elif piece in seen:
            out.append(f"(?P={piece})")
        else:
            seen.add(piece)
            out.append(f"(?P<{piece}>{fields[piece]})")
    return re.compile("".join(out))


@cache
def _fact_patterns() -> list[tuple[str, int, re.Pattern[str]]]:
    return [
        (key, t, _pattern(phrasing.cap(text), _fields()))
        for key, texts in phrasing.TEMPLATES.items()
        for t, text in enumerate(texts)
    ]


def _relations(sentence: str) -> list[Relation]:
    """Every reading of one fact sentence."""
    out = []
    for key, t, pattern in _fact_patterns():
        m = pattern.fullmatch(sentence)
        if m is None:
            continue
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        if not all(_plain(g[s]) in _POOL for s in "xab" if s in g):
            continue
        name = _plain(g["x"])
        if key == "given":
            out.append(Relation(name, "given", (), key, t, int(g["v"])))
            continue
        op, slots = key.split("_")
        args = tuple(_plain(g[s]) if kind == "q" else int(g["c"]) for s, kind in zip("ab", slots, strict=True))
        out.append(Relation(name, op, args, key, t))
    return out


def _plain(name: str) -> str:
    """A name as the pool spells it ("The red box" at the start of a sentence is "the red box")."""
    return name if name in _POOL else name[0].lower() + name[1:]


def _valued(chosen: dict[str, Relation]) -> dict[str, Relation] | None:
    """The relations with values, or None when a name is undefined, a value invalid, or a cycle."""
    done = {n: r for n, r in chosen.items() if r.op == "given"}
    pending = [r for r in chosen.values() if r.op != "given"]
    while pending:
        ready = [r for r in pending if all(a in done for a in r.args if is_ref(a))]
        if not ready:
            return None
        for r in ready:
            a, b = (done[x].value if is_ref(x) else x for x in r.args)
            value = apply(r.op, a, b)
            if value is None:
                return None
            done[r.name] = Relation(r.name, r.op, r.args, r.key, r.template, value)
            pending.remove(r)
    return done


def _resolve(options: list[list[Relation]]) -> dict[str, Relation] | None:
    """One reading per sentence such that every quantity is stated once and the values work out."""
    order = sorted(options, key=len)
    chosen: dict[str, Relation] = {}

    def search(k: int) -> dict[str, Relation] | None:
        if k == len(order):
            return _valued(chosen)
        for r in order[k]:
            if r.name not in chosen:
                chosen[r.name] = r
                found = search(k + 1)
                if found is not None:
                    return found
                del chosen[r.name]
        return None

    return search(0)


@cache
def _ask_patterns() -> list[re.Pattern[str]]:
    return [_pattern(phrasing.cap(text), _fields()) for text in phrasing.QUESTIONS]


def _ask(sentence: str) -> str:
    for pattern in _ask_patterns():
        m = pattern.fullmatch(sentence)
        if m and _plain(m["x"]) in _POOL:
            return _plain(m["x"])
    raise ValueError(f"not a testbed question: {sentence!r}")


def read_question(text: str) -> Reading:
    """The graph a testbed question's text states (raises ValueError for any other text)."""
    *facts, ask = re.split(r"(?<=[.?]) ", text.strip())
    relations = _resolve([_relations(f) for f in facts])
    if relations is None or len(relations) != len(facts):
        raise ValueError(f"cannot read the facts of {text[:80]!r}")
    target = _ask(ask)
    needed, todo = set(), [target]
    while todo:
        name = todo.pop()
        needed.add(name)
        todo += [a for a in relations[name].args if is_ref(a) and a not in needed]
    derived = [n for n in needed if relations[n].op != "given"]
    depth = {n: sum(_uses(relations, n, m) for m in derived) for n in derived}
    distractors = tuple(n for n in relations if n not in needed)
    return Reading(relations, target, tuple(sorted(derived, key=depth.get)), distractors)


def _uses(relations: dict[str, Relation], name: str, other: str) -> bool:
    """True when ``name`` depends on ``other`` (directly or through others)."""
    args = [a for a in relations[name].args if is_ref(a)]
    return other in args or any(_uses(relations, a, other) for a in args)


# ---------------------------------------------------------------- the steps

_NUMBER = r"\d+"
_FIELDS = {"v": _NUMBER, "w": _NUMBER, "h": _NUMBER, "r": _NUMBER, "n": _NUMBER, "a": _NUMBER, "b": _NUMBER}
_EXPR = r"\d+ [-+*/] \d+"
EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) (?:=|is|gives) (\d+)")
_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


@cache
def _kind_pattern(kind: str) -> re.Pattern[str]:
    """Any opener of ``kind`` (every setting), a space, then any of its bodies."""
    tables = [t[kind] for t in (OPENERS, OWN_OPENERS) if kind in t]
    openers = {o for t in tables for o in (*t.keyword, *t.free, *t.other)}
    bodies = [b for key, texts in BODIES.items() if key.split("_")[0] == kind for b in texts]
    fields = {"expr": _EXPR, "wexpr": _EXPR, **_FIELDS}
    alternatives = []
    for body in bodies:
        pieces = re.split(r"\{(\w+)\}", body)
        alternatives.append(
            "".join(re.escape(p) if i % 2 == 0 else f"(?:{fields.get(p, '.+?')})" for i, p in enumerate(pieces))
        )
    opener = "|".join(re.escape(o) for o in sorted(openers, key=len, reverse=True))
    return re.compile(f"(?:{opener}) (?:{'|'.join(alternatives)})")


def step_kinds(signal: Signal, text: str) -> frozenset[str]:
    """The kinds of step of this signal whose wording fits ``text`` (all of them if none fits)."""
    if signal is Signal.RESPONSE:
        return frozenset({"answer"})
    kinds = [k for k, s in SIGNAL.items() if s is signal]
    fits = frozenset(k for k in kinds if _kind_pattern(k).fullmatch(text))
    return fits or frozenset(kinds)


def has_slip(text: str) -> bool:
    """True when a step writes a false equation ("4 + 3 = 8")."""
    return any(apply(_OPS[m[2]], int(m[1]), int(m[3])) != int(m[4]) for m in EQUATION.finditer(text))
