"""The hidden computation graph behind a testbed problem: which quantity uses which, and the values.

A graph is a list of :class:`Quantity` in dependency order. A quantity is either ``given`` (a leaf
whose value the problem states) or the result of one operation on two operands; an operand is the id
of an earlier quantity or a constant written in the fact itself ("3 more than"). The structure is
drawn first and the values afterwards, so a perturbed variant can keep the structure and draw new
numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

OPS = ("add", "sub", "mul", "div")
SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}

Arg = str | int | None
"""An operand: a quantity id (str), a constant (int), or a constant not drawn yet (None)."""


@dataclass
class Quantity:
    """One node of the graph; ``needed`` is True when the target depends on it (or is it)."""

    qid: str
    op: str
    args: list[Arg] = field(default_factory=list)
    needed: bool = True
    value: int | None = None


@dataclass(frozen=True)
class Ranges:
    """Where values and constants are drawn from; every value stays in ``0..max_value``."""

    max_value: int
    min_given: int
    max_addend: int
    max_factor: int


def apply(op: str, a: int, b: int) -> int | None:
    """The result of ``a op b``, or None when it is negative or an inexact division."""
    if op == "add":
        return a + b
    if op == "sub":
        return a - b if a >= b else None
    if op == "mul":
        return a * b
    if b == 0 or a % b:
        return None
    return a // b


def is_ref(arg: Arg) -> bool:
    """True for an operand that names a quantity (rather than a constant)."""
    return isinstance(arg, str)


def kinds(q: Quantity) -> str:
    """The template key of a quantity: ``given`` or e.g. ``sub_cq`` (constant minus quantity)."""
    if q.op == "given":
        return "given"
    return q.op + "_" + "".join("q" if is_ref(a) else "c" for a in q.args)


# ---------------------------------------------------------------- structure


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    ops = [op for op in OPS if weights.get(op, 0) > 0]
    return rng.choices(ops, [weights[op] for op in ops])[0]


def _order(op: str, first: str, second: Arg, rng: random.Random) -> list[Arg]:
    """Place the chain operand and the other one; constants go second except in ``c - q``."""
    if second is None:
        if op == "sub" and rng.random() < 0.3:
            return [None, first]
        return [first, None]
    return [first, second] if rng.random() < 0.5 else [second, first]


def needed_structure(
    ops: int, rng: random.Random, weights: dict[str, float], constant_share: float, reuse_share: float
) -> list[Quantity]:
    """A graph whose target (the last quantity) takes exactly ``ops`` operations to compute.

    Each operation uses the previous result, so all of them are needed; its other operand is a
    constant, a new given quantity, or (with ``reuse_share``) an earlier quantity, which turns the
    chain into a DAG.
    """
    qs: list[Quantity] = []

    def new_leaf() -> str:
        qs.append(Quantity(f"q{len(qs)}", "given"))
        return qs[-1].qid

    prev: str | None = None
    for _ in range(ops):
        op = _weighted(rng, weights)
        first = prev or new_leaf()
        earlier = [q.qid for q in qs if q.qid != first]
        second: Arg
        if rng.random() < constant_share:
            second = None
        elif earlier and rng.random() < reuse_share:
            second = rng.choice(earlier)
        else:
            second = new_leaf()
        qs.append(Quantity(f"q{len(qs)}", op, _order(op, first, second, rng)))
        prev = qs[-1].qid
    return qs


def fresh_copy(qs: list[Quantity]) -> list[Quantity]:
    """The same structure with every value and constant undrawn (for a perturbed variant)."""
    return [Quantity(q.qid, q.op, [a if is_ref(a) else None for a in q.args], q.needed) for q in qs]


# ---------------------------------------------------------------- values


def _draw_range(op: str, pos: int, is_const: bool, r: Ranges) -> tuple[int, int]:
    """Where an undrawn operand comes from; divisors and factors start at 2 so they matter."""
    if op in ("mul", "div") and pos == 1 and (is_const or op == "div"):
        return 2, r.max_factor if is_const else r.max_value
    if is_const:
        return (1, r.max_value) if pos == 0 else (1, r.max_addend)
    return r.min_given, r.max_value


def _candidates(op: str, pos: int, other: int | None, lo: int, hi: int, r: Ranges) -> range | list[int]:
    """Values in ``lo..hi`` for the operand at ``pos`` that keep the result valid and in range."""
    if other is None:
        return range(lo, hi + 1)
    m = r.max_value
    if op == "add":
        return range(lo, min(hi, m - other) + 1)
    if op == "sub":  # strictly smaller subtrahend: a zero would make every later product trivial
        return range(max(lo, other + 1), hi + 1) if pos == 0 else range(lo, min(hi, other - 1) + 1)
    if op == "mul":
        return range(lo, hi + 1 if other == 0 else min(hi, m // other) + 1)
    if pos == 0:
        return range(-(-lo // other) * other, hi + 1, other) if other else []
    return [d for d in range(max(lo, 1), hi + 1) if other % d == 0]


def _value_node(q: Quantity, by_id: dict[str, Quantity], rng: random.Random, r: Ranges) -> bool:
    """Draw the undrawn operands of ``q`` (constants, unvalued leaves) and set its value."""
    for _ in range(20):
        vals = [by_id[a].value if is_ref(a) else a for a in q.args]
        open_pos = [i for i, v in enumerate(vals) if v is None]
        rng.shuffle(open_pos)
        for pos in open_pos:
            lo, hi = _draw_range(q.op, pos, not is_ref(q.args[pos]), r)
            cands = _candidates(q.op, pos, vals[1 - pos], lo, hi, r)
            if not cands:
                break
            vals[pos] = rng.choice(cands)
        else:
            result = apply(q.op, vals[0], vals[1])
            if result is not None and min(1, r.min_given) <= result <= r.max_value:
                _commit(q, vals, by_id, result)
                return True
    return False


def _commit(q: Quantity, vals: list, by_id: dict[str, Quantity], result: int) -> None:
    for i, a in enumerate(q.args):
        if is_ref(a):
            by_id[a].value = vals[i]
        else:
            q.args[i] = vals[i]
    q.value = result


def assign_values(qs: list[Quantity], rng: random.Random, r: Ranges) -> bool:
    """Draw all values in dependency order; False when some operation cannot be satisfied."""
    by_id = {q.qid: q for q in qs}
    for q in qs:
        if q.op != "given" and not _value_node(q, by_id, rng, r):
            return False
    for q in qs:
        if q.value is None:  # a given quantity nothing uses
            q.value = rng.randint(r.min_given, r.max_value)
    return True


def add_distractors(qs: list[Quantity], count: int, rng: random.Random, r: Ranges, weights: dict) -> None:
    """Append ``count`` quantities the target does not need: given ones, or one operation on any
    existing quantity and a constant, so each distractor is exactly one extra fact."""
    by_id = {q.qid: q for q in qs}
    for _ in range(count):
        q = Quantity(f"q{len(qs)}", "given", needed=False)
        if rng.random() < 0.5:
            base = rng.choice(qs).qid
            op = _weighted(rng, weights)
            q.op, q.args = op, _order(op, base, None, rng)
            if not _value_node(q, by_id, rng, r):
                q.op, q.args = "given", []
        if q.op == "given":
            q.value = rng.randint(r.min_given, r.max_value)
        qs.append(q)
        by_id[q.qid] = q


def dependency_order(qs: list[Quantity], rng: random.Random) -> list[str]:
    """A random order in which every quantity comes after the quantities it uses."""
    pending = {q.qid: {a for a in q.args if is_ref(a)} for q in qs}
    order: list[str] = []
    while pending:
        ready = [qid for qid, deps in pending.items() if not deps]
        pick = rng.choice(ready)
        order.append(pick)
        del pending[pick]
        for deps in pending.values():
            deps.discard(pick)
    return order


def shape(qs: list[Quantity]) -> str:
    """The structure of the needed part, independent of ids, names and numbers.

    Example: ``g;add(n0,c);g;mul(n1,n2)``: perturbed variants of a problem share it.
    """
    index = {q.qid: f"n{i}" for i, q in enumerate(q for q in qs if q.needed)}
    parts = []
    for q in qs:
        if q.needed:
            args = ",".join(index[a] if is_ref(a) else "c" for a in q.args)
            parts.append("g" if q.op == "given" else f"{q.op}({args})")
    return ";".join(parts)
