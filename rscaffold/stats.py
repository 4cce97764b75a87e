"""Statistics of a trace file: steps, keyword coverage, signal distribution, transitions.

Counts are gathered in one streaming pass (:class:`TraceStats`), so any file size works. Where
steps carry their true signals (the scripted teacher), the accuracy of the labels against them is
reported too.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.config import Config
from rscaffold.runs import progress
from rscaffold.schema import Trace, atomic_writer, read_jsonl
from rscaffold.signals import Signal

NONE = "none"
STATES = [s.key for s in Signal] + [NONE]


def signal_key(signal: Signal | None) -> str:
    """A signal's key, or ``none`` for an unlabelled step."""
    return NONE if signal is None else signal.key


@dataclass
class TraceStats:
    """Running counts over traces; :meth:`summary` turns them into the report."""

    steps_per_trace: list[int] = field(default_factory=list)
    thinking_steps: int = 0
    labelled_by: Counter[str] = field(default_factory=Counter)
    signals: Counter[str] = field(default_factory=Counter)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_teacher: dict[str, Counter[str]] = field(default_factory=dict)
    truth: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(true signal, label) pairs of the thinking steps that carry a true signal."""

    def add(self, trace: Trace) -> None:
        self.steps_per_trace.append(len(trace.steps))
        teacher = self.per_teacher.setdefault(trace.teacher, Counter())
        previous = None
        for step in trace.steps:
            self.signals[signal_key(step.signal)] += 1
            if previous is not None:
                self.transitions[(previous, signal_key(step.signal))] += 1
            previous = signal_key(step.signal)
            if step.signal is Signal.RESPONSE:
                continue
            self.thinking_steps += 1
            self.labelled_by[step.labelled_by or NONE] += 1
            teacher["steps"] += 1
            teacher["keyword"] += step.labelled_by == "keyword"
            if step.true_signal is not None:
                self.truth[(step.true_signal.key, signal_key(step.signal))] += 1

    def summary(self) -> dict[str, Any]:
        n_steps = sum(self.steps_per_trace)
        spt = self.steps_per_trace
        out: dict[str, Any] = {
            "traces": len(spt),
            "steps": n_steps,
            "thinking_steps": self.thinking_steps,
            "steps_per_trace": {
                "mean": round(statistics.fmean(spt), 2) if spt else 0.0,
                "median": statistics.median(spt) if spt else 0,
                "max": max(spt, default=0),
            },
            "keyword_coverage": _share(self.labelled_by["keyword"], self.thinking_steps),
            "label_coverage": _share(self.thinking_steps - self.labelled_by[NONE], self.thinking_steps),
            "labelled_by": dict(self.labelled_by),
            "signal_distribution": {k: _share(self.signals[k], n_steps) for k in STATES},
            "signal_counts": {k: self.signals[k] for k in STATES},
            "transitions": {a: {b: self.transitions[(a, b)] for b in STATES} for a in STATES},
            "keyword_coverage_by_teacher": {
                t: _share(c["keyword"], c["steps"]) for t, c in sorted(self.per_teacher.items())
            },
        }
        if self.truth:
            out["truth"] = self._truth_summary()
        return out

    def _truth_summary(self) -> dict[str, Any]:
        labelled = {k: v for k, v in self.truth.items() if k[1] != NONE}
        right = sum(v for (t, p), v in labelled.items() if t == p)
        per_signal = {}
        for s in STATES[:-1]:
            total = sum(v for (t, p), v in labelled.items() if t == s)
            if total:
                per_signal[s] = _share(labelled.get((s, s), 0), total)
        return {
            "steps": sum(self.truth.values()),
            "labelled": sum(labelled.values()),
            "accuracy_on_labelled": _share(right, sum(labelled.values())),
            "accuracy_by_true_signal": per_signal,
            "confusion": {f"{t}->{p}": v for (t, p), v in sorted(self.truth.items())},
        }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def compute(traces: Iterable[Trace]) -> dict[str, Any]:
    """One pass over the traces; returns the summary dict."""
    acc = TraceStats()
    for trace in traces:
        acc.add(trace)
    return acc.summary()


def format_summary(s: dict[str, Any]) -> str:
    """A short human-readable report of :func:`compute`'s summary."""
    spt = s["steps_per_trace"]
    lines = [
        f"traces            {s['traces']}",
        f"steps             {s['steps']} ({s['thinking_steps']} thinking), per trace mean {spt['mean']}, "
        f"median {spt['median']}, max {spt['max']}",
        f"keyword coverage  {s['keyword_coverage']:.3f} of thinking steps (paper reports 0.74)",
        f"label coverage    {s['label_coverage']:.3f}",
        "signal distribution:",
        *(f"  {k:<11} {s['signal_distribution'][k]:.3f}  ({s['signal_counts'][k]})" for k in STATES),
    ]
    if len(s["keyword_coverage_by_teacher"]) > 1:
        lines.append("keyword coverage by teacher:")
        lines += [f"  {v:.3f}  {t}" for t, v in s["keyword_coverage_by_teacher"].items()]
    lines.append("transitions (row: from, column: to):")
    lines.append("  " + " " * 11 + " ".join(f"{k[:6]:>6}" for k in STATES))
    lines += [f"  {a:<11}" + " ".join(f"{s['transitions'][a][b]:>6}" for b in STATES) for a in STATES]
    if "truth" in s:
        t = s["truth"]
        lines.append(
            f"against true signals: {t['labelled']}/{t['steps']} steps labelled, "
            f"accuracy on those {t['accuracy_on_labelled']:.3f}"
        )
        lines += [f"  {k:<11} {v:.3f}" for k, v in t["accuracy_by_true_signal"].items()]
    return "\n".join(lines)


def run_file(cfg: Config, inp: Path, out: Path | None) -> dict[str, Any]:
    summary = compute(progress(read_jsonl(inp, Trace), "stats"))
    if out is not None:
        with atomic_writer(out) as f:
            json.dump(summary, f, indent=2)
    return summary


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The stats stage in a run folder: ``labelled.jsonl`` -> ``stats.json``."""
    inp = runs.require(runs.labelled(run_dir), "label", run_dir)
    return run_file(cfg, inp, runs.stats(run_dir))
