"""Stage 8, report: one static HTML page (PNGs beside it) comparing every method of one or more runs.

``rscaffold report RUN_DIR...`` reads each run's ``results.json``, ``scored/`` and ``decoded/`` (as
``rscaffold evaluate`` and ``rscaffold decode`` leave them) and writes ``report/index.html``: the
comparison table (method, signal source, benchmark, Pass@1 with its interval, tokens per answer), the
plots of :mod:`rscaffold.report_plots`, and a trace viewer (each question's steps coloured by signal,
with confidences, right and wrong answers marked, filterable). It works offline: no CDN, no fetch.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rscaffold.report_html import TEMPLATE
from rscaffold.report_plots import PLOTS, SIGNAL_COLOURS
from rscaffold.schema import Decoded, InputError, atomic_writer, read_json_objects, read_jsonl
from rscaffold.signals import Signal


class ReportConfig(BaseModel):
    """What the report shows."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("Reasoning Scaffolding: evaluation report", description="Heading of the report page.")
    viewer_questions: int = Field(
        100, ge=0, description="Questions per decoded file in the trace viewer (the page grows with it)."
    )


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    """The entries of a run's results.json, each tagged with the run folder."""
    path = run_dir / "results.json"
    if not path.is_file():
        raise InputError(f"{path}: not found; run `rscaffold evaluate --run-dir {run_dir}` first")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(results.get("entries"), list):
        raise InputError(f"{path}: field 'entries' missing; is this a results.json of `rscaffold evaluate`?")
    return [{**e, "run": str(run_dir)} for e in results["entries"]]


def _pct(ci: dict[str, Any]) -> str:
    if ci.get("mean") is None:
        return "–"
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def table(entries: list[dict[str, Any]]) -> str:
    """The comparison table as HTML, one row per (run, method, signal source, benchmark, split)."""
    head = ["run", "method", "variant", "signal source", "benchmark", "split", "n", "Pass@1 strict [95% CI]",
            "Pass@1 flexible [95% CI]", "tokens / answer", "equations right", "next-signal acc."]  # fmt: skip
    rows = []
    for e in entries:
        tokens = e.get("tokens_per_answer")
        eq = e.get("consistency", {}).get("equations_right")
        nxt = e.get("signals", {}).get("next_signal", {}).get("accuracy")
        cells = [Path(e["run"]).name, e["method"], e.get("variant", ""), e["signal_source"], e["benchmark"], e["split"],
                 e["n"],
                 _pct(e["pass@1_strict"]), _pct(e["pass@1_flexible"]), "–" if tokens is None else f"{tokens:.1f}",
                 "–" if eq is None else f"{eq:.3f}", "–" if nxt is None else f"{nxt:.3f}"]  # fmt: skip
        tds = "".join(f"<td{' class=t' if i < 6 else ''}>{html.escape(str(c))}</td>" for i, c in enumerate(cells))
        rows.append(f"<tr>{tds}</tr>")
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table id="comparison"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def viewer_questions(entries: list[dict[str, Any]], limit: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Entry names and the first ``limit`` questions of each entry, joined from decoded and scored files."""
    names, questions = [], []
    for i, e in enumerate(entries):
        variant = f" / {e['variant']}" if e.get("variant") else ""
        where = f"{e['benchmark']}:{e['split']}"
        names.append(f"{Path(e['run']).name}: {e['method']}{variant} / {e['signal_source']} / {where}")
        decoded_path = Path(e["run"]) / "decoded" / e["file"]
        scored_path = Path(e["run"]) / "scored" / e["file"]
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
    """The headline block of a demo run (``headline.json``, written by ``rscaffold demo``), if any."""
    path = run_dir / "headline.json"
    if not path.is_file():
        return ""
    from rscaffold.demo import headline_html

    return headline_html(json.loads(path.read_text(encoding="utf-8")))


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
        .replace("__TABLE__", headlines + table(entries))
        .replace("__PLOTS__", "\n".join(plots) or "<p>No plots: the runs hold nothing to plot.</p>")
        .replace("__DATA__", _script_json(data))  # last: model outputs must not be scanned for placeholders
    )
    with atomic_writer(out / "index.html") as f:
        f.write(page)
    return out / "index.html"


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold report`` (config options and KEY=VALUE overrides are added by the CLI)."""
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders evaluated before")
    p.add_argument("--output", type=Path, help="report folder (default: the first run folder's report/)")


def split_overrides(args: argparse.Namespace) -> None:
    """Move ``KEY=VALUE`` items that argparse put among the run folders (both are positional) to
    ``args.overrides``; the CLI calls this before it loads the config."""
    is_override = [("=" in str(d) and not Path(d).exists()) for d in args.run_dirs]
    args.overrides = [
        *(getattr(args, "overrides", None) or []),
        *(str(d) for d, o in zip(args.run_dirs, is_override, strict=True) if o),
    ]
    args.run_dirs = [d for d, o in zip(args.run_dirs, is_override, strict=True) if not o]
    if not args.run_dirs:
        raise InputError("report: give at least one RUN_DIR")


def cmd_report(args: argparse.Namespace, cfg: Any) -> int:
    """``rscaffold report RUN_DIR...``: writes the page and prints its path."""
    rcfg = getattr(cfg, "report", None) or ReportConfig()  # the CLI passes the whole Config
    run_dirs = [Path(d) for d in args.run_dirs]
    out = args.output or run_dirs[0] / "report"
    page = write_report(run_dirs, Path(out), rcfg)
    print(f"report: wrote {page}", file=sys.stderr)
    print(page)
    return 0
