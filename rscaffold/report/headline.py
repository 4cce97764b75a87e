"""The headline of a run: per test split, the most-common-answer rate, every row (``<student>__<variant>``)
pooled over seeds, and the comparisons fixed in advance (``experiment.comparisons`` and the signal-quality
rows) as paired differences with bootstrap intervals; as JSON, text and an HTML block."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from rscaffold import runs
from rscaffold.config import Comparison, ExperimentConfig
from rscaffold.metrics import bootstrap_ci


def pct(ci: dict[str, Any]) -> str:
    """A mean with its interval."""
    if ci.get("mean") is None:
        return "–"
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def trivial_rate(questions: Path) -> tuple[float, str, int]:
    """The most-common-answer rate of a questions file: (share, answer, n)."""
    golds = [json.loads(line)["gold"] for line in questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    answer, count = Counter(golds).most_common(1)[0]
    return count / len(golds), answer, len(golds)


def row_marks(run: Path, row: str, split: str, seeds: list[int]) -> dict[tuple[int, str], bool]:
    """(seed, question id) -> correct, for the row ``<student>__<variant>`` on ``split``, over seeds."""
    student, _, variant = row.partition("__")
    out: dict[tuple[int, str], bool] = {}
    for seed in seeds:
        path = runs.scored(run, runs.Decoding(student, seed, variant, split))
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                out[(seed, r["id"])] = bool(r["correct"])
    return out


def paired_difference(a: dict, b: dict, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean of a - b over the questions both answered, with a percentile bootstrap interval."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    d = np.array([float(a[k]) - float(b[k]) for k in keys])
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi), "n": len(d)}


def _rows(exp: ExperimentConfig) -> list[str]:
    return sorted({f"{v.student}__{v.name}" for v in exp.variants})


def headline(run: Path, exp: ExperimentConfig) -> dict[str, Any]:
    """Per split: trivial rate, every row pooled over seeds, and the comparisons fixed in advance:
    ``experiment.comparisons`` and (c) each signal-quality row minus the reference row, paired differences
    over the same seeds and questions with bootstrap intervals."""
    rows = _rows(exp)
    splits = list(dict.fromkeys([*exp.splits, *(s for v in exp.variants for s in (v.splits or []))]))
    fixed = [*exp.comparisons]
    fixed += [Comparison(name=f"(c) signal quality: {r}", a=r, b=exp.reference) for r in exp.signal_quality]
    out: dict[str, Any] = {"seeds": exp.seeds, "splits": {}}
    for split in splits:
        questions = runs.questions(run, split)
        if not questions.exists():
            continue
        share, answer, n = trivial_rate(questions)
        entry: dict[str, Any] = {"questions": n, "trivial": {"rate": share, "answer": answer}, "rows": {}}
        scored = {row: row_marks(run, row, split, exp.seeds) for row in rows}
        for row, marks in scored.items():
            if marks:
                entry["rows"][row] = bootstrap_ci([float(x) for x in marks.values()], samples=2000)
        entry["comparisons"] = [
            {"name": c.name, "a": c.a, "b": c.b, "difference": paired_difference(scored[c.a], scored[c.b])}
            for c in fixed
            if scored.get(c.a) and scored.get(c.b)
        ]
        if entry["rows"]:
            best_row = max(entry["rows"], key=lambda r: entry["rows"][r]["mean"])
            entry["best"] = {"row": best_row, **entry["rows"][best_row]}
        out["splits"][split] = entry
    return out


def _ci(ci: dict[str, Any] | None) -> str:
    if not ci or ci.get("mean") is None:
        return "-"
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def _signed(ci: dict[str, Any]) -> str:
    return f"{ci['mean']:+.3f} [{ci['lo']:+.3f}, {ci['hi']:+.3f}]"


def format_headline(h: dict[str, Any]) -> str:
    """The headline as plain text: the rows per split, then each fixed comparison per split."""
    seeds = ", ".join(map(str, h["seeds"]))
    lines = [f"seeds: {seeds}; Pass@1 (strict) with 95% bootstrap intervals, pooled over seeds"]
    rows = sorted({r for s in h["splits"].values() for r in s["rows"]})
    width = max([len(r) for r in rows] + [24])
    lines.append(f"{'':<{width}}  " + "  ".join(f"{split:<22}" for split in h["splits"]))
    lines.append(
        f"{'most-common answer':<{width}}  " + "  ".join(f"{s['trivial']['rate']:<22.3f}" for s in h["splits"].values())
    )
    for row in rows:
        lines.append(f"{row:<{width}}  " + "  ".join(f"{_ci(s['rows'].get(row)):<22}" for s in h["splits"].values()))
    names = list(dict.fromkeys(c["name"] for s in h["splits"].values() for c in s.get("comparisons", [])))
    lines.append("comparisons fixed in advance (paired over seeds and questions; 95% bootstrap intervals):")
    for name in names:
        lines.append(f"  {name}")
        for split, s in h["splits"].items():
            for c in s.get("comparisons", []):
                if c["name"] == name:
                    d = c["difference"]
                    lines.append(f"    {split:<15} {c['a']} - {c['b']} = {_signed(d)} (n={d['n']})")
    return "\n".join(lines)


def headline_html(h: dict[str, Any]) -> str:
    """The headline as an HTML block for the report."""
    splits = list(h["splits"])
    rows = sorted({r for s in h["splits"].values() for r in s["rows"]})
    head = "".join(f"<th>{html.escape(s)}</th>" for s in ["row", *splits])
    body = ["<tr><td class=t>most-common answer</td>" + "".join(
        f"<td>{h['splits'][s]['trivial']['rate']:.3f}</td>" for s in splits) + "</tr>"]  # fmt: skip
    for row in rows:
        cells = "".join(f"<td>{pct(h['splits'][s]['rows'].get(row, {}))}</td>" for s in splits)
        body.append(f"<tr><td class=t>{html.escape(row)}</td>{cells}</tr>")
    diffs = []
    for split, s in h["splits"].items():
        for c in s.get("comparisons", []):
            diffs.append(
                f"<li>{html.escape(c['name'])}, {html.escape(split)}: {html.escape(c['a'])} &minus; "
                f"{html.escape(c['b'])} = {pct(c['difference'])} (paired over {c['difference']['n']} answers)</li>"
            )
    seeds = ", ".join(map(str, h["seeds"]))
    return (
        f"<h2>Headline</h2><p>Pass@1 (strict) with 95% bootstrap intervals, pooled over seeds {seeds}.</p>"
        f'<table id="headline"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f"<h3>Comparisons fixed in advance</h3><ul>{''.join(diffs)}</ul>"
    )
