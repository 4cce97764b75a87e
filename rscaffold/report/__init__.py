"""The report stage: one static HTML page (PNGs beside it) comparing every method of one or more runs.

``rscaffold report RUN_DIR...`` reads each run's ``results.json``, ``scored/`` and ``decoded/`` (as
``rscaffold evaluate`` and ``rscaffold decode`` leave them) and writes ``report/index.html``: the
comparison table (method, signal source, benchmark, Pass@1 with its interval, tokens per answer), the
plots of :mod:`rscaffold.report.plots`, and a trace viewer (each question's steps coloured by signal,
with confidences, right and wrong answers marked, filterable). It works offline: no CDN, no fetch.
"""

from __future__ import annotations

import html
import itertools
import json
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.config import Config, ReportConfig
from rscaffold.probe import lookup_probe  # PyTorch loads only when it probes
from rscaffold.report.headline import headline, headline_html, pct
from rscaffold.report.plots import PLOTS, SIGNAL_COLOURS
from rscaffold.report.template import TEMPLATE
from rscaffold.schema import Decoded, InputError, Question, atomic_writer, read_json_objects, read_jsonl
from rscaffold.signals import Signal


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    """The entries of a run's results.json, each tagged with the run folder."""
    path = runs.results(run_dir)
    if not path.is_file():
        raise InputError(f"{path}: not found; run `rscaffold evaluate --run-dir {run_dir}` first")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(results.get("entries"), list):
        raise InputError(f"{path}: field 'entries' missing; is this a results.json of `rscaffold evaluate`?")
    return [{**e, "run": str(run_dir)} for e in results["entries"]]


def table(entries: list[dict[str, Any]]) -> str:
    """The comparison table as HTML, one row per (run, method, signal source, benchmark, split)."""
    head = ["run", "method", "variant", "signal source", "benchmark", "split", "n", "Pass@1 strict [95% CI]",
            "Pass@1 flexible [95% CI]", "tokens / answer", "equations right", "next-signal acc.",
            "signal adherence (per signal)", "swap sensitivity (per new signal)"]  # fmt: skip
    rows = []
    for e in entries:
        tokens = e.get("tokens_per_answer")
        eq = e.get("consistency", {}).get("equations_right")
        nxt = e.get("signals", {}).get("next_signal", {}).get("accuracy")
        cells = [Path(e["run"]).name, e["method"], e.get("variant", ""), e["signal_source"], e["benchmark"], e["split"],
                 e["n"],
                 pct(e["pass@1_strict"]), pct(e["pass@1_flexible"]), "–" if tokens is None else f"{tokens:.1f}",
                 "–" if eq is None else f"{eq:.3f}", "–" if nxt is None else f"{nxt:.3f}",
                 adherence_cell(e.get("signals", {}).get("adherence")),
                 adherence_cell(e.get("signals", {}).get("swap_sensitivity"))]  # fmt: skip
        tds = "".join(f"<td{' class=t' if i < 6 else ''}>{html.escape(str(c))}</td>" for i, c in enumerate(cells))
        rows.append(f"<tr>{tds}</tr>")
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table id="comparison"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def adherence_cell(a: dict[str, Any] | None) -> str:
    """Overall signal adherence, then per signal written ("contrast 0.81, ...")."""
    if not a or a.get("share") is None:
        return "–"
    return f"{a['share']:.3f} (" + ", ".join(f"{k} {v:.2f}" for k, v in a["by_signal"].items()) + ")"


def viewer_questions(entries: list[dict[str, Any]], limit: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Entry names and the first ``limit`` questions of each entry, joined from decoded and scored files."""
    names, questions = [], []
    for i, e in enumerate(entries):
        variant = f" / {e['variant']}" if e.get("variant") else ""
        where = f"{e['benchmark']}:{e['split']}"
        names.append(f"{Path(e['run']).name}: {e['method']}{variant} / {e['signal_source']} / {where}")
        decoded_path = runs.decoded_dir(Path(e["run"])) / e["file"]
        scored_path = runs.scored(Path(e["run"]), e["file"])
        if not decoded_path.is_file() or not scored_path.is_file() or limit == 0:
            continue
        scored = {r["id"]: r for _, r in read_json_objects(scored_path)}
        for n, d in enumerate(read_jsonl(decoded_path, Decoded)):
            if n >= limit:
                break
            questions.append(_viewer_record(i, d, scored.get(d.question_id, {})))
    return names, questions


def _viewer_record(entry: int, d: Decoded, s: dict[str, Any]) -> dict[str, Any]:
    steps = [
        {"text": st.text, "signal": st.signal.key if st.signal is not None else None, "confidence": st.confidence}
        for st in d.steps
    ] or [{"text": d.answer_text, "signal": None, "confidence": None}]
    search = " ".join([d.question, d.answer_text, *(st["text"] for st in steps)]).lower()
    return {
        "entry": entry,
        "id": d.question_id,
        "question": d.question,
        "gold": s.get("gold", d.gold),
        "strict": s.get("answer_strict"),
        "flexible": s.get("answer_flexible"),
        "correct": bool(s.get("correct")),
        "tokens": d.tokens,
        "steps": steps,
        "search": search,
    }


def _headline(run_dir: Path) -> str:
    """The headline block of a run (``headline.json``, written by the report stage), if any."""
    path = runs.headline(run_dir)
    if not path.is_file():
        return ""
    return headline_html(json.loads(path.read_text(encoding="utf-8")))


def calibration_table(run_dir: Path) -> str:
    """The signal head's calibration on the golden traces (``results.json`` -> ``calibration``), if any."""
    path = runs.results(run_dir)
    cal = json.loads(path.read_text(encoding="utf-8")).get("calibration") if path.is_file() else None
    if not cal:
        return ""
    rows = []
    for student, splits in cal.items():
        for split, r in splits.items():
            curve = "; ".join(f"{p['confidence']:.2f}→{p['accuracy']:.2f} (n {p['n']})" for p in r["curve"])
            cells = [student, split, r["n"], f"{r['accuracy']:.3f}", f"{r['ece']:.3f}", curve]
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ["student", "golden traces", "decisions", "head accuracy", "ECE", "reliability: confidence→accuracy"]
    )
    title = f"<h3>Signal head calibration ({html.escape(run_dir.name)})</h3>"
    return f'{title}<table class="calibration"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element: no "</" can end it early."""
    return json.dumps(data).replace("</", "<\\/").replace("<!--", "<\\!--")


def write_report(run_dirs: list[Path], out: Path, cfg: ReportConfig) -> Path:
    """Write ``out/index.html`` and its PNGs; returns the page's path."""
    entries = [e for run in run_dirs for e in load_results(run)]
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for title, draw in PLOTS.items():
        name = draw(entries, out)
        if name is not None:
            plots.append(f'<h3>{html.escape(title)}</h3><img src="{name}" alt="{html.escape(title)}">')
    names, questions = viewer_questions(entries, cfg.viewer_questions)
    data = {
        "entries": names,
        "questions": questions,
        "signals": [s.key for s in Signal],
        "colours": {s.key: SIGNAL_COLOURS[s] for s in Signal},
    }
    runs = ", ".join(html.escape(str(r)) for r in run_dirs)
    headlines = "".join(_headline(run) for run in run_dirs)
    page = (
        TEMPLATE.replace("__TITLE__", html.escape(cfg.title))
        .replace("__SUBTITLE__", f"Runs: {runs}. {len(entries)} entries; {len(questions)} questions in the viewer.")
        .replace("__TABLE__", headlines + table(entries) + "".join(calibration_table(r) for r in run_dirs))
        .replace("__PLOTS__", "\n".join(plots) or "<p>No plots: the runs hold nothing to plot.</p>")
        .replace("__DATA__", _script_json(data))  # last: model outputs must not be scanned for placeholders
    )
    with atomic_writer(out / "index.html") as f:
        f.write(page)
    return out / "index.html"


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The report stage in a run folder: ``headline.json`` (the comparisons fixed in advance, and the base
    model's look-up probe for a testbed base) and ``report/index.html``; returns the headline."""
    h = headline(run_dir, cfg.experiment)
    probe = _probe(cfg, run_dir)
    if probe:
        h["probe"] = probe
    with atomic_writer(runs.headline(run_dir)) as f:
        json.dump(h, f, indent=2)
    h["page"] = str(write_report([run_dir], runs.report_dir(run_dir), cfg.report))
    return h


def _probe(cfg: Config, run_dir: Path) -> dict[str, Any] | None:
    """The base model's look-up probe per format (``rscaffold probe``) on the first 200 test_id questions,
    for a testbed base: it shows whether the base favours one recipe's way of writing values."""
    questions = runs.questions(run_dir, "test_id")
    if not cfg.experiment.probe or cfg.model.base != "testbed" or not questions.exists():
        return None
    first = list(itertools.islice(read_jsonl(questions, Question), 200))
    return lookup_probe(cfg.model.base, first)
