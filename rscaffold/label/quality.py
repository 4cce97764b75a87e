"""``rscaffold label-report``: how well a trace file is labelled, and how labellings agree.

For each file: coverage per source (teacher) and how its steps were labelled, the signal
distribution, the transition matrix, accuracy against the true signals where steps carry them (the
testbed), and, with ``--function-tags DIR``, agreement with the sentence function tags that come with
the Thought Anchors traces (``thought_anchors_math/chunks_labeled``). ``--compare A B`` gives the
agreement of two labellings of the same steps: confusion matrix and Cohen's kappa.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rscaffold.label.learned import LearnedLabeller
from rscaffold.schema import InputError, Trace, field_error, read_json_objects, read_jsonl
from rscaffold.signals import Signal
from rscaffold.stats import NONE, STATES, signal_key

TARGET_OVERALL, TARGET_PER_SIGNAL = 0.95, 0.85
"""Issue 5's bar for the full labelling against the testbed's true signals."""

FUNCTION_TAGS = {
    "problem_setup": Signal.REASONING,
    "plan_generation": Signal.REASONING,
    "active_computation": Signal.REASONING,
    "self_checking": Signal.REASONING,
    "fact_retrieval": Signal.OPINION,
    "uncertainty_management": Signal.CONTRAST,
    "result_consolidation": Signal.CONCLUSION,
    "final_answer_emission": Signal.CONCLUSION,
}
"""Thought Anchors function tag -> signal. Parsing the problem, planning, computing and checking are
analysis (the paper's Reasoning keywords include "let me", "first", "wait"); recalling a fact is
Personal Opinion and Recall ("i recall", "i remember"); managing uncertainty (doubting, backtracking,
"wait, but") is Contrast and Concession; consolidating a result and stating the final answer are
Conclusion and Summary. No tag corresponds to Addition or Examples."""


def _thinking(trace: Trace) -> list[int]:
    return [i for i, s in enumerate(trace.steps) if s.signal is not Signal.RESPONSE]


@dataclass
class FileReport:
    """Running counts over one labelled trace file."""

    by_source: dict[str, Counter[str]] = field(default_factory=dict)
    signals: Counter[str] = field(default_factory=Counter)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    truth: Counter[tuple[str, str]] = field(default_factory=Counter)
    tags: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, trace: Trace, tag_signals: list[Signal | None] | None = None) -> None:
        source = self.by_source.setdefault(trace.teacher, Counter())
        keys = [signal_key(s.signal) for s in trace.steps]
        self.signals.update(keys)
        self.transitions.update(pairwise(keys))
        for i in _thinking(trace):
            step = trace.steps[i]
            source["steps"] += 1
            source[step.labelled_by or NONE] += 1
            if step.true_signal is not None:
                self.truth[(step.true_signal.key, keys[i])] += 1
        for i, tag in zip(_thinking(trace), tag_signals or [], strict=False):
            if tag is not None:
                self.tags[(tag.key, keys[i])] += 1

    def summary(self) -> dict[str, Any]:
        n = sum(self.signals.values())
        total: Counter[str] = sum(self.by_source.values(), Counter())
        out: dict[str, Any] = {
            "coverage": _coverage(total),
            "coverage_by_source": {t: _coverage(c) for t, c in sorted(self.by_source.items())},
            "signal_distribution": {k: _share(self.signals[k], n) for k in STATES},
            "transitions": {a: {b: self.transitions[(a, b)] for b in STATES} for a in STATES},
        }
        if self.truth:
            out["truth"] = accuracy(self.truth)
        if self.tags:
            out["function_tags"] = agreement(self.tags)
        return out


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _coverage(c: Counter[str]) -> dict[str, Any]:
    """Thinking steps, the share labelled, and the share labelled by each stage."""
    steps = c["steps"]
    by = {k: _share(v, steps) for k, v in sorted(c.items()) if k not in ("steps", NONE)}
    return {"steps": steps, "labelled": _share(steps - c[NONE], steps), "by": by}


def accuracy(pairs: Counter[tuple[str, str]]) -> dict[str, Any]:
    """Accuracy of labels against true signals, overall and per true signal; unlabelled counts as wrong."""
    steps = sum(pairs.values())
    right = sum(v for (t, p), v in pairs.items() if t == p)
    per = {}
    for s in STATES[:-1]:
        n = sum(v for (t, _), v in pairs.items() if t == s)
        if n:
            per[s] = _share(pairs[(s, s)], n)
    ok = right / steps >= TARGET_OVERALL and all(v >= TARGET_PER_SIGNAL for v in per.values()) if steps else False
    labelled = sum(v for (_, p), v in pairs.items() if p != NONE)
    return {
        "steps": steps,
        "accuracy": _share(right, steps),
        "labelled": labelled,
        "accuracy_on_labelled": _share(right, labelled),
        "by_signal": per,
        "meets_target": ok,
    }


def kappa(pairs: Counter[tuple[str, str]]) -> float:
    """Cohen's kappa of two labellings given as (a, b) -> count."""
    n = sum(pairs.values())
    if not n:
        return 0.0
    observed = sum(v for (a, b), v in pairs.items() if a == b) / n
    rows: Counter[str] = Counter()
    cols: Counter[str] = Counter()
    for (a, b), v in pairs.items():
        rows[a] += v
        cols[b] += v
    expected = sum(rows[k] * cols[k] for k in rows) / n / n
    return round((observed - expected) / (1 - expected), 4) if expected < 1 else 1.0


def agreement(pairs: Counter[tuple[str, str]]) -> dict[str, Any]:
    """Agreement of two labellings over the steps both label: share, kappa, confusion (rows: first)."""
    both = Counter({k: v for k, v in pairs.items() if NONE not in k})
    n = sum(both.values())
    rows = [s for s in STATES if any(k[0] == s for k in both)]
    cols = [s for s in STATES if any(k[1] == s for k in both)]
    return {
        "steps": sum(pairs.values()),
        "compared": n,
        "agreement": _share(sum(v for (a, b), v in both.items() if a == b), n),
        "kappa": kappa(both),
        "confusion": {a: {b: both[(a, b)] for b in cols} for a in rows},
    }


# ------------------------------------------------------------------ Thought Anchors function tags


def load_function_tags(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Chunk lists by trace id (file ``a__b__c.json`` holds the chunks of trace ``a/b/c``)."""
    return {p.stem.replace("__", "/"): json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


def step_tags(trace: Trace, chunks: list[dict[str, Any]]) -> list[Signal | None]:
    """The mapped function tag of each thinking step: the tag of the first sentence chunk that starts
    inside the step (chunks are found in order in the thinking text); None where no chunk starts."""
    steps = [trace.steps[i] for i in _thinking(trace)]
    starts, pos = [], 0
    for s in steps:
        starts.append(pos)
        pos += len(s.text) + len(s.sep)
    text = "".join(s.text + s.sep for s in steps)
    out: list[Signal | None] = [None] * len(steps)
    cursor, k = 0, 0
    for chunk in chunks:
        needle = chunk.get("chunk", "").strip()
        at = text.find(needle, cursor) if needle else -1
        if at < 0:
            continue
        cursor = at + len(needle)
        while k + 1 < len(steps) and starts[k + 1] <= at:
            k += 1
        tags = chunk.get("function_tags") or []
        if out[k] is None and tags and tags[0] in FUNCTION_TAGS and at < starts[k] + len(steps[k].text):
            out[k] = FUNCTION_TAGS[tags[0]]
    return out


# ------------------------------------------------------------------ files


def report_file(path: Path, tags: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """One streaming pass over a labelled trace file."""
    acc = FileReport()
    for trace in read_jsonl(path, Trace):
        chunks = (tags or {}).get(trace.question_id)
        acc.add(trace, step_tags(trace, chunks) if chunks else None)
    return acc.summary()


def _signals(path: Path) -> Iterator[tuple[tuple[str, str], list[str]]]:
    for trace in read_jsonl(path, Trace):
        yield (trace.teacher, trace.question_id), [signal_key(trace.steps[i].signal) for i in _thinking(trace)]


def compare_files(a: Path, b: Path) -> dict[str, Any]:
    """Agreement of two labellings of the same traces (matched by teacher and question id)."""
    first = dict(_signals(a))
    pairs: Counter[tuple[str, str]] = Counter()
    for key, signals in _signals(b):
        mine = first.get(key)
        if mine is not None and len(mine) == len(signals):
            pairs.update(zip(mine, signals, strict=True))
    if not pairs:
        raise InputError(f"{b}: no trace with the same teacher, question id and step count as in {a}")
    return agreement(pairs)


# ------------------------------------------------------------------ against a reference labelling

JUDGED = Path(__file__).parent / "judge_labels" / "steps.jsonl"
"""The shipped judge-labelled real steps (``--against judged``); see ``judge_labels/PROVENANCE.md``."""


def reference_labels(path: Path, held_out: bool = False) -> dict[tuple[str, str, int], str]:
    """(teacher, question id, thinking step index) -> signal key, from labelled traces or from step rows
    (``judge_labels/steps.jsonl``: teacher, question_id, index, signal; ``held_out``: its held-out part)."""
    out: dict[tuple[str, str, int], str] = {}
    for lineno, row in read_json_objects(path):
        if "steps" in row:
            try:
                trace = Trace.model_validate(row)
            except ValidationError as e:
                raise field_error(str(path), lineno, e) from None
            for i in _thinking(trace):
                if trace.steps[i].signal is not None:
                    out[(trace.teacher, trace.question_id, i)] = signal_key(trace.steps[i].signal)
            continue
        if not {"teacher", "question_id", "index", "signal"} <= row.keys() or not isinstance(row["index"], int):
            what = "a labelled trace, or a step row (teacher, question_id, index: an integer, signal)"
            raise InputError(f"{path}:{lineno}: expected {what}")
        if row["signal"] not in {s.key for s in Signal}:
            raise InputError(f"{path}:{lineno}: field 'signal': unknown signal {row['signal']!r}")
        if not held_out or row.get("split") == "held_out":
            out[(str(row["teacher"]), str(row["question_id"]), int(row["index"]))] = row["signal"]
    if not out:
        raise InputError(f"{path}: no labelled step" + (" in its held-out part" if held_out else ""))
    return out


def against_reference(path: Path, reference: dict[tuple[str, str, int], str]) -> dict[str, Any]:
    """Agreement of a labelled file with a reference over the steps both have (an unlabelled step counts
    as a disagreement), kappa, and the recall of each reference signal."""
    pairs: Counter[tuple[str, str]] = Counter()
    for trace in read_jsonl(path, Trace):
        for i in _thinking(trace):
            ref = reference.get((trace.teacher, trace.question_id, i))
            if ref is not None:
                pairs[(ref, signal_key(trace.steps[i].signal))] += 1
    if not pairs:
        raise InputError(f"{path}: none of its steps is in the reference (matched by teacher, question id, index)")
    n = sum(pairs.values())
    out = agreement(pairs) | {"agreement": _share(sum(v for (a, b), v in pairs.items() if a == b), n)}
    out["kappa"] = kappa(pairs)
    recall = {}
    for s in STATES[:-1]:
        total = sum(v for (a, _), v in pairs.items() if a == s)
        if total:
            recall[s] = _share(pairs[(s, s)], total)
    return out | {"recall": recall, "pairs": [[a, b, v] for (a, b), v in sorted(pairs.items())]}


# ------------------------------------------------------------------ printing and command


def _matrix(title: str, m: dict[str, dict[str, int]]) -> list[str]:
    cols = list(next(iter(m.values()), {}))
    lines = [f"{title} (rows: first, columns: second):", "  " + " " * 11 + " ".join(f"{c[:6]:>6}" for c in cols)]
    return lines + [f"  {a:<11}" + " ".join(f"{row[c]:>6}" for c in cols) for a, row in m.items()]


def format_agreement(name: str, a: dict[str, Any]) -> list[str]:
    head = f"{name}: {a['compared']}/{a['steps']} steps labelled by both, agreement {a['agreement']:.3f}, "
    return [head + f"Cohen's kappa {a['kappa']:.3f}", *_matrix("  confusion", a["confusion"])]


def format_truth(t: dict[str, Any]) -> list[str]:
    verdict = "meets" if t["meets_target"] else "MISSES"
    lines = [
        f"against true signals: {t['steps']} steps, accuracy {t['accuracy']:.3f} "
        f"({verdict} the target {TARGET_OVERALL} overall, {TARGET_PER_SIGNAL} per signal; unlabelled counts as wrong)",
        f"  on the {t['labelled']} labelled steps: {t['accuracy_on_labelled']:.3f}",
        "  per true signal:",
    ]
    return lines + [f"    {k:<11} {v:.3f}" for k, v in t["by_signal"].items()]


def format_held_out(name: str, held: dict[str, Any], overrule: float | None = None) -> str:
    """A learned labeller's held-out scores, per group and signal, under a heading that says what they
    measure: for the context kind, agreement of the policy (paper keywords + the labeller at ``overrule``)
    with the judge; for the distant kind, accuracy on keyword-opened steps with the keyword removed."""
    if any(group.startswith("judge") for group in held):
        what = (f"the policy (paper keywords + this labeller, learned_overrule {overrule}) against the judge on "
                "held-out judged steps (never trained on); an unlabelled step counts as a miss")  # fmt: skip
        score = "agree"
    else:
        what = "accuracy on held-out keyword-opened steps, keyword removed (the keyword's signal is the label)"
        score = "acc"
    head = f"  {'group':<40} {'steps':>5}  {score:>5}  {'kappa':>5}   recall of each signal (steps)"
    lines = [f"learned labeller {name}: {what}", head]
    for group, r in held.items():
        per = " ".join(f"{k} {v['accuracy']:.3f} ({v['steps']})" for k, v in r["by_signal"].items())
        kap = f"{r['kappa']:.3f}" if "kappa" in r else "-"
        lines.append(f"  {group:<40} {r['steps']:>5}  {r['accuracy']:.3f}  {kap:>5}   {per}")
    return "\n".join(lines)


def format_report(path: str, s: dict[str, Any]) -> str:
    """A short human-readable report of one file's summary."""
    c = s["coverage"]
    by = ", ".join(f"{k} {v:.3f}" for k, v in c["by"].items())
    lines = [f"== {path}", f"coverage  {c['labelled']:.3f} of {c['steps']} thinking steps ({by})", "by source:"]
    lines += [f"  {v['labelled']:.3f}  {v['steps']:>6}  {t}" for t, v in s["coverage_by_source"].items()]
    lines.append("signal distribution:")
    lines += [f"  {k:<11} {v:.3f}" for k, v in s["signal_distribution"].items()]
    lines += _matrix("transitions", s["transitions"])
    if "truth" in s:
        lines += format_truth(s["truth"])
    if "against" in s:
        a = s["against"]
        lines += format_agreement("reference vs labels", a)
        lines.append("  recall of each reference signal: " + ", ".join(f"{k} {v:.3f}" for k, v in a["recall"].items()))
    if "function_tags" in s:
        lines += format_agreement("function tags (Thought Anchors, mapped) vs labels", s["function_tags"])
    return "\n".join(lines)


def add_label_report_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold label-report``."""
    p.add_argument("files", nargs="*", type=Path, help="labelled trace files")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--against-truth", action="store_true", help="require true signals and check the targets")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("FILE_A", "FILE_B"), help="two labellings to compare")
    p.add_argument("--function-tags", type=Path, metavar="DIR", help="Thought Anchors chunks_labeled folder")
    p.add_argument(
        "--against",
        metavar="FILE",
        help="agreement, kappa and per-signal recall against a reference labelling (labelled traces, or step "
        "rows; 'judged': the shipped judge-labelled real steps)",
    )
    p.add_argument("--held-out", action="store_true", help="with --against: only the reference's held-out steps")
    p.add_argument(
        "--labeller", metavar="MODEL", help="also print a learned labeller's held-out accuracy (default, DIR)"
    )


def cmd_label_report(args: argparse.Namespace) -> int:
    """Print the report; exit 1 when ``--against-truth`` finds the targets missed."""
    if not args.files and not args.compare and not args.labeller:
        raise InputError("label-report: give labelled trace FILEs, --compare FILE_A FILE_B or --labeller MODEL")
    tags = load_function_tags(args.function_tags) if args.function_tags else None
    out: dict[str, Any] = {str(p): report_file(p, tags) for p in args.files}
    if args.compare:
        out["compare"] = compare_files(*args.compare)
    if args.against:
        ref = reference_labels(JUDGED if args.against == "judged" else Path(args.against), args.held_out)
        for p in args.files:
            out[str(p)]["against"] = against_reference(p, ref)
    meta = LearnedLabeller.load(args.labeller).meta if args.labeller else {}
    if args.labeller:
        out["labeller"] = meta.get("held_out", {})
    missed = False
    if args.against_truth:
        for path in map(str, args.files):
            if "truth" not in out[path]:
                raise InputError(f"{path}: --against-truth: no step carries a true signal")
            missed |= not out[path]["truth"]["meets_target"]
    if args.json:
        print(json.dumps(out))
    else:
        text = [format_report(p, s) for p, s in out.items() if p not in ("compare", "labeller")]
        if args.compare:
            text.append("\n".join(format_agreement(f"{args.compare[0]} vs {args.compare[1]}", out["compare"])))
        if args.labeller:
            text.append(format_held_out(args.labeller, out["labeller"], meta.get("held_out_overrule")))
        print("\n\n".join(text))
    return 1 if missed else 0
