"""Metrics: Pass@1 with a bootstrap interval, and the consistency and signal metrics the paper lacks.

The paper claims logical consistency but measures none (METHOD.md section 6). Measured here:
- answer consistency within perturbation groups (testbed ``test_perturbed``, GSM-Plus seeds);
- arithmetic validity: the share of stated equations ``a op b = c`` that are right;
- intermediate conclusions: the share of stated values ``X = v`` that agree with the true values
  (testbed), and the share that a later step contradicts (states another value for the same X);
- signals: next-signal accuracy against the teacher's sequence (overall and per signal), normalised
  edit distance between the sequences, and the divergence of the transition matrices.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

# -- Pass@1 --------------------------------------------------------------------------------------


def bootstrap_ci(values: Sequence[float], samples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of ``values`` and its percentile bootstrap interval (resampling questions with replacement)."""
    if not values:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(samples, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(x.mean()), "lo": float(lo), "hi": float(hi), "n": len(x)}


def accuracy_by(rows: Iterable[tuple[Any, bool]]) -> dict[str, dict[str, float]]:
    """{key: {"accuracy", "n"}} for (key, correct) pairs, keys sorted (ops counts, splits)."""
    groups: dict[Any, list[bool]] = defaultdict(list)
    for key, correct in rows:
        groups[key].append(correct)
    return {str(k): {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(groups.items())}


# -- answer consistency under perturbation -------------------------------------------------------


def group_consistency(rows: Iterable[tuple[str, bool]]) -> dict[str, float | int | None]:
    """For (group, correct) pairs: groups of two or more variants that are all right, all the same
    (all right or all wrong), and the mean agreement of correctness over pairs within a group."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for group, correct in rows:
        groups[group].append(bool(correct))
    multi = [g for g in groups.values() if len(g) > 1]
    if not multi:
        return {"groups": 0, "all_correct": None, "same_outcome": None, "pair_agreement": None}
    pairs = [(sum(g), len(g)) for g in multi]
    agree = sum(k * (k - 1) / 2 + (n - k) * (n - k - 1) / 2 for k, n in pairs)
    total = sum(n * (n - 1) / 2 for _, n in pairs)
    return {
        "groups": len(multi),
        "all_correct": sum(k == n for k, n in pairs) / len(multi),
        "same_outcome": sum(k in (0, n) for k, n in pairs) / len(multi),
        "pair_agreement": agree / total,
    }


# -- equations and intermediate conclusions ------------------------------------------------------

_NUM = r"-?\d+(?:\.\d+)?"
_EQUATION = re.compile(rf"((?:{_NUM}\s*[-+*/×÷]\s*)+{_NUM})\s*=\s*({_NUM})")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _arith(node: ast.AST) -> float:
    """Value of an expression of numbers and + - * / only (anything else raises ValueError)."""
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_arith(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_arith(node.left), _arith(node.right))
    raise ValueError("not plain arithmetic")


def _agrees(value: float, stated: str) -> bool:
    """True when ``stated`` is ``value`` to the precision it is written in (26 / 6 = 4.33 is right)."""
    decimals = len(stated.partition(".")[2])
    target = float(stated)
    return abs(value - target) <= max(1e-9 * max(1.0, abs(target)), 0.5 * 10**-decimals if decimals else 0)


def equations(text: str) -> list[dict[str, Any]]:
    """Every ``a op b (op c ...) = c`` in ``text`` (calculator annotations included) and whether it holds."""
    found = []
    for m in _EQUATION.finditer(text.replace(",", "")):
        expr = m.group(1).replace("×", "*").replace("÷", "/")
        try:
            value = _arith(ast.parse(expr, mode="eval"))
        except (ValueError, SyntaxError, ZeroDivisionError, OverflowError):  # a student may write 10**400
            continue
        found.append({"equation": m.group(0), "right": _agrees(value, m.group(2))})
    return found


def stated_values(text: str, names: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """Values the text states for named quantities, in order: ``X = ... = v``, ``X has v``, ``X ends up with v``.

    ``names`` (the testbed's quantity names) restricts the match to known quantities; without it any
    identifier before ``=`` counts.
    """
    if names:
        who = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        who = rf"(?<![\w'])({who})(?![\w'])"
    else:
        who = r"(?<![\w'])([A-Za-z]\w*)"
    value = rf"\$?({_NUM})(?![\d.]*\s*[-+*/×÷\d])"  # a result, not the first operand of an expression
    chain = rf"{who}\s*=\s*(?:[-\d.\s+*/×÷()]*=\s*)*{value}"  # X = 2 * 8 = 16 states 16
    said = rf"{who}\s+(?:has|owns|holds|gets|ends up with|is left with)\s+{value}"
    found = [(m.start(), m.group(1), float(m.group(2))) for p in (chain, said) for m in re.finditer(p, text)]
    return [(name, v) for _, name, v in sorted(found)]


def conclusion_metrics(steps: Sequence[str], truth: dict[str, float] | None = None) -> dict[str, int]:
    """Counts over the stated values of the thinking steps: how many agree with ``truth`` (when
    given), and how many a later step contradicts by stating another value for the same quantity."""
    names = list(truth) if truth else None
    stated = [(i, name, v) for i, text in enumerate(steps) for name, v in stated_values(text, names)]
    counts = Counter(stated=len(stated))
    for i, name, v in stated:
        if truth is not None and name in truth:
            counts["checked"] += 1
            counts["true"] += math.isclose(v, truth[name], rel_tol=1e-9, abs_tol=1e-9)
        counts["contradicted"] += any(j > i and n == name and w != v for j, n, w in stated)
    return dict(counts)


# -- signals --------------------------------------------------------------------------------------


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (insert, delete, substitute: cost 1 each)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def next_signal_accuracy(pairs: Iterable[tuple[Sequence[str], Sequence[str]]]) -> dict[str, Any]:
    """Position by position, over (student, teacher) signal sequences: how often the student's signal at
    step t is the teacher's. Positions past the shorter sequence count as misses of the teacher's signal."""
    hits: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for student, teacher in pairs:
        for t, gold in enumerate(teacher):
            seen[gold] += 1
            hits[gold] += t < len(student) and student[t] == gold
    total = sum(seen.values())
    per = {s: {"accuracy": hits[s] / seen[s], "n": seen[s]} for s in sorted(seen)}
    return {"accuracy": sum(hits.values()) / total if total else None, "per_signal": per, "n": total}


def transitions(sequences: Iterable[Sequence[str]], keys: Sequence[str]) -> np.ndarray:
    """Counts of signal ``i`` followed by signal ``j`` over the sequences (rows: from, columns: to)."""
    index = {k: i for i, k in enumerate(keys)}
    m = np.zeros((len(keys), len(keys)))
    for seq in sequences:
        for a, b in itertools.pairwise(seq):
            m[index[a], index[b]] += 1
    return m


def transition_divergence(student: np.ndarray, teacher: np.ndarray, smoothing: float = 0.5) -> float | None:
    """Jensen-Shannon divergence (bits, 0..1) of the next-signal distributions row by row, averaged
    with the teacher's row counts as weights; rows are smoothed so unseen transitions stay finite."""
    if teacher.sum() == 0:
        return None
    p = (student + smoothing) / (student + smoothing).sum(axis=1, keepdims=True)
    q = (teacher + smoothing) / (teacher + smoothing).sum(axis=1, keepdims=True)
    m = (p + q) / 2
    js = 0.5 * (p * np.log2(p / m)).sum(axis=1) + 0.5 * (q * np.log2(q / m)).sum(axis=1)
    return float((js * teacher.sum(axis=1)).sum() / teacher.sum())


def adherence(pairs: Iterable[Sequence[str]]) -> dict[str, Any]:
    """Signal adherence: of the steps written under a signal, the share the labeller gives that signal,
    overall and per signal written; ``pairs`` are (signal written under, label)."""
    total: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    for written, label in pairs:
        total[written] += 1
        kept[written] += written == label
    n = sum(total.values())
    by = {k: kept[k] / total[k] for k in sorted(total)}
    return {"steps": n, "share": sum(kept.values()) / n if n else None, "by_signal": by, "steps_by_signal": dict(total)}
