"""`rscaffold report`: the page, its PNGs, and a render in headless Chromium with no script errors."""

from __future__ import annotations

import html
import itertools
import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from matplotlib.colors import to_hex

from rscaffold import evaluate
from rscaffold.cli import main
from rscaffold.config import Config, EvaluateConfig, ReportConfig
from rscaffold.report import plots, write_report
from rscaffold.schema import Decoded as DecodedRecord
from rscaffold.schema import InputError, read_jsonl, write_jsonl
from rscaffold.signals import Signal
from tests.test_evaluate import make_run


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A run of two methods, evaluated, with an injection attempt in one output, then reported."""
    run = make_run(tmp_path_factory.mktemp("report"), n=30)
    path = run / "decoded" / "scaffold-s0__golden__test_id.jsonl"
    records = list(read_jsonl(path, DecodedRecord))
    records[0].answer_text += "</script><script>throw new Error('injected')</script>__DATA__"
    records[0].steps[-1].text = records[0].answer_text
    write_jsonl(path, records)
    evaluate.run(Config(evaluate=EvaluateConfig(bootstrap_samples=100)), run)
    return write_report([run], run / "report", ReportConfig(viewer_questions=20))


def test_report_files(report: Path) -> None:
    page = report.read_text()
    for png in ("accuracy_by_method", "accuracy_by_ops", "tokens_vs_accuracy", "signal_distribution", "transitions"):
        assert (report.parent / f"{png}.png").stat().st_size > 1000
        assert f'src="{png}.png"' in page
    assert page.count("<tr>") == 1 + 4 and "scaffold" in page and "cot-sft" in page
    assert "http://" not in page and "https://" not in page  # works offline: no CDN
    data = page.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    assert len(json.loads(data)["questions"]) == 4 * 20


def test_cli_arguments_and_errors(tmp_path: Path, report: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(report.parent.parent, run)
    assert main(["report", str(run), "report.title=Title x", "--output", str(tmp_path / "r")]) == 0
    assert "Title x" in (tmp_path / "r" / "index.html").read_text()
    assert capsys.readouterr().out.strip().endswith("index.html")
    assert main(["report", str(run)]) == 0  # one run: the report stage, with the headline
    headline = json.loads((run / "headline.json").read_text())
    assert headline["splits"]["test_id"]["rows"]["scaffold__golden"]["mean"] == pytest.approx(23 / 30)
    assert "scaffold__golden" in capsys.readouterr().out
    with pytest.raises(InputError, match=r"results\.json: not found"):
        write_report([tmp_path], tmp_path / "out", ReportConfig())


STUDENTS = ["scaffold", "scaffold-sel-only", "cot-sft", "long-sft-matched-tokens"]
VARIANTS = {"golden": ("golden", None), "predictor-gate-t0.3": ("predictor-head", 0.3),
            "predictor-gate-t0.6": ("predictor-head", 0.6), "summaries-only": ("predictor-head", 0.3)}  # fmt: skip
SPLITS = ["test_id", "test_ood", "test_perturbed", "test_surface"]


def _ci(rng: random.Random) -> dict[str, float]:
    mean = rng.uniform(0.05, 0.95)
    return {"mean": mean, "lo": max(0.0, mean - 0.08), "hi": min(1.0, mean + 0.08), "n": 300}


def wide_entries() -> list[dict]:
    """results.json entries of 16 variants (4 students x 4 variants, long names) on 4 splits, with every field
    the plots read: the hard case for their layout."""
    rng, entries = random.Random(0), []
    for split, student, (variant, (source, tau)) in itertools.product(SPLITS, STUDENTS, VARIANTS.items()):
        counts = {s.key: rng.randint(0, 300) for s in Signal}
        e = {"file": f"{student}-s0__{variant}__{split}.jsonl", "student": student, "seed": 0, "variant": variant,
             "method": student.split("-")[0], "signal_source": source, "benchmark": "testbed", "split": split,
             "n": 300, "pass@1_strict": _ci(rng), "pass@1_flexible": _ci(rng),
             "tokens_per_answer": rng.uniform(10, 400),
             "accuracy_by_ops": {str(k): {"accuracy": rng.random(), "n": 60} for k in range(1, 6)},
             "signals": {"distribution": counts, "keys": [s.key for s in Signal],
                         "transitions": [[rng.randint(0, 50) for _ in Signal] for _ in Signal]}}  # fmt: skip
        entries.append({**e, "tau": tau} if tau is not None else e)
    return entries


def few_entries() -> list[dict]:
    """Two variants of one student on one split: a figure of one panel."""
    return [e for e in wide_entries() if e["split"] == "test_id" and e["variant"].startswith("predictor-gate")][:2]


WIDTHS, HEIGHTS = (400, 1150), (150, 1000)
"""Bounds of a PNG in pixels: at most the page's width (1200 px) and about a screen's height."""


@pytest.fixture(scope="module")
def figures():
    """Every figure of the hard case (16 variants) and of the small one, drawn once for this module."""
    cases = {"wide": wide_entries(), "few": few_entries()}
    drawn = {(case, name): plots.figure(name, entries) for case, entries in cases.items() for name in plots.FIGURES}
    yield drawn
    for fig in drawn.values():
        plots._pyplot().close(fig)


def _overlap(a, b, slack: float = 1.0) -> bool:
    """Whether two display boxes share more than ``slack`` pixels each way."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > slack and min(a.y1, b.y1) - max(a.y0, b.y0) > slack


def _labels(fig) -> list:
    """The figure's visible labels: tick labels within the axis's view, axis labels, titles."""
    out = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            ticks = [t for t in axis.get_major_ticks() if lo - 1e-9 <= t.get_loc() <= hi + 1e-9]
            out += [t.label1 for t in ticks if t.label1.get_visible() and t.label1.get_text()]
            out += [axis.label] if axis.label.get_visible() and axis.label.get_text() else []
        out += [t for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]
    return out


def layout_problems(fig) -> list[str]:
    """What keeps a figure from reading at a glance, measured by matplotlib on the drawn figure: a size
    off WIDTHS x HEIGHTS, a label or legend outside the figure, two labels overlapping, a legend over an
    axes or over a label."""
    fig.set_dpi(plots.DPI)
    fig.draw_without_rendering()
    width, height = fig.get_size_inches() * plots.DPI
    fits = WIDTHS[0] <= width <= WIDTHS[1] and HEIGHTS[0] <= height <= HEIGHTS[1]
    problems = [] if fits else [f"size {width:.0f}x{height:.0f} px"]
    labels = [(t.get_text(), t.get_window_extent()) for t in _labels(fig)]
    legends = [lg for lg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if lg is not None]
    boxes = labels + [(f"legend {i}", lg.get_window_extent()) for i, lg in enumerate(legends)]
    problems += [f"{t!r} outside the figure" for t, b in boxes if b.x0 < -1 or b.y0 < -1 or b.x1 > width + 1
                 or b.y1 > height + 1]  # fmt: skip
    pairs = itertools.combinations(boxes, 2)
    problems += [f"{a!r} overlaps {b!r}" for (a, ba), (b, bb) in pairs if _overlap(ba, bb)]
    axes = [ax.get_window_extent() for ax in fig.axes]
    problems += [f"legend {i} covers an axes" for i, lg in enumerate(legends)
                 if any(_overlap(lg.get_window_extent(), a) for a in axes)]  # fmt: skip
    return problems


@pytest.mark.parametrize("name", list(plots.FIGURES))
@pytest.mark.parametrize("case", ["wide", "few"])
def test_every_figure_reads_at_a_glance(figures, case: str, name: str) -> None:
    """16 variants on 4 splits (the hard case) and 2 variants on 1 split: no overlaps, legends outside."""
    assert figures[case, name] is not None
    assert layout_problems(figures[case, name]) == []


def _legend_colours(fig) -> dict[str, str]:
    legend = fig.legends[0]
    return {t.get_text(): to_hex(h.get_color()) for t, h in zip(legend.texts, legend.legend_handles, strict=True)}


def test_a_variant_has_one_colour_in_every_figure(figures) -> None:
    colours = _legend_colours(figures["wide", "accuracy_by_ops.png"])
    assert len(set(colours.values())) == len(colours) == 16
    assert _legend_colours(figures["wide", "tokens_vs_accuracy.png"]) == colours
    lines = {to_hex(line.get_color()) for ax in figures["wide", "accuracy_by_ops.png"].axes for line in ax.lines}
    assert lines == set(colours.values())
    bars = figures["wide", "accuracy_by_method.png"].axes
    names = [t.get_text().replace("\n", " ") for t in bars[0].get_yticklabels()]
    assert len(names) == 16
    for ax in bars:
        for bar in ax.patches:
            assert to_hex(bar.get_facecolor()) == colours[names[round(bar.get_y() + bar.get_height() / 2)]]


def test_the_tau_sweep_joins_variants_of_one_student_at_several_taus(figures) -> None:
    fig = figures["wide", "tau_sweep.png"]
    # per split, one line per student: 0.3 (the gate's first variant; summaries-only is not a point) and 0.6
    assert [len(ax.lines) for ax in fig.axes] == [len(STUDENTS)] * len(SPLITS)
    assert all(list(line.get_xdata()) == [0.3, 0.6] for ax in fig.axes for line in ax.lines)
    entries = wide_entries()
    gate = {(e["student"], e["split"]): e["pass@1_strict"]["mean"] for e in entries
            if e["variant"] == "predictor-gate-t0.3"}  # fmt: skip
    assert fig.axes[0].lines[0].get_ydata()[0] == gate["scaffold", "test_id"]
    one_tau = [e for e in entries if e["variant"] != "predictor-gate-t0.6"]
    assert plots.figure("tau_sweep.png", one_tau) is None  # variants at one tau are no sweep


def _chromium() -> str:
    """The Chromium to render with. Tests never install system packages: CI's .ci/run runs
    scripts/install_chromium.sh first and sets RSCAFFOLD_REQUIRE_CHROMIUM, so that a missing browser
    fails there instead of skipping."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is not None:
        return found
    if os.environ.get("RSCAFFOLD_REQUIRE_CHROMIUM"):
        pytest.fail("RSCAFFOLD_REQUIRE_CHROMIUM is set but no chromium is on PATH")
    pytest.skip("chromium not found (install it with scripts/install_chromium.sh, as root on Debian)")


def test_a_missing_chromium_skips_without_installing_it(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"a test ran {a[0]}"))
    monkeypatch.delenv("RSCAFFOLD_REQUIRE_CHROMIUM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium not found"):
        _chromium()


def _render(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The DOM of ``page`` after its scripts ran in headless Chromium in a 1280 x 1000 window (the page's
    1200 px fit), and its log."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--window-size=1280,1000", "--virtual-time-budget=3000", "--dump-dom"]  # fmt: skip
    done = subprocess.run([_chromium(), *flags, page.as_uri()], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


MEASURE = """<pre id="measure"></pre><script>
window.addEventListener("load", function () {
  var sizes = Array.prototype.map.call(document.querySelectorAll(".plots img"), function (img) {
    return {src: img.getAttribute("src"), complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
            shown: [img.width, img.height]};
  });
  document.getElementById("measure").textContent = JSON.stringify(sizes);
});
</script></body>"""
"""Appended to a page: on load, it writes each plot's natural and displayed size into the DOM."""


def _plot_sizes(page: Path, tmp_path: Path) -> tuple[str, str, list[dict]]:
    """Render ``page`` with MEASURE appended (beside it, for the PNGs it names): the DOM, the log, and the
    plots' sizes, each checked: loaded, natural size within WIDTHS x HEIGHTS, shown unscaled."""
    measured = page.with_name("measured.html")
    measured.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE), encoding="utf-8")
    dom, log = _render(measured, tmp_path)
    sizes = json.loads(html.unescape(re.search(r'<pre id="measure">(.*?)</pre>', dom, re.DOTALL).group(1)))
    for s in sizes:
        (width, height), shown = s["natural"], s["shown"]
        assert s["complete"] and WIDTHS[0] <= width <= WIDTHS[1] and HEIGHTS[0] <= height <= HEIGHTS[1], s
        assert shown == [width, height], s  # not shrunk by the browser: text as large as drawn
    return dom, log, sizes


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom, log, sizes = _plot_sizes(report, tmp_path)
    errors = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.DOTALL)
    assert errors is not None and errors.group(1).strip() == "", errors.group(1) if errors else dom[:2000]
    assert not re.search(r"Uncaught|CONSOLE\(\d+\).*error", log), log[-2000:]
    assert dom.count("<tr>") == 1 + 4  # the comparison table
    assert dom.count('class="q right"') + dom.count('class="q wrong"') == 4 * 20  # the viewer drew every card
    assert 'class="q wrong"' in dom and 'class="q right"' in dom and 'class="sig"' in dom
    assert "&lt;/script&gt;&lt;script&gt;throw" in dom  # the injected markup is shown as text, not run
    assert "80 of 80 shown" in dom
    assert len(sizes) == 5  # every plot but the tau sweep


@pytest.mark.slow
def test_the_plots_of_16_variants_show_at_their_drawn_size_in_chromium(tmp_path: Path) -> None:
    _chromium()  # skips before drawing anything where no browser is installed
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"entries": wide_entries()}))
    page = write_report([run], run / "report", ReportConfig(viewer_questions=0))
    _, _, sizes = _plot_sizes(page, tmp_path)
    assert sorted(s["src"] for s in sizes) == sorted(plots.FIGURES)


def test_the_heads_calibration_is_shown_per_student_and_split(tmp_path):
    import json

    from rscaffold.report import calibration_table

    assert calibration_table(tmp_path) == ""  # no results.json: nothing to show
    curve = [{"low": 0.9, "high": 1.0, "n": 4, "confidence": 0.95, "accuracy": 0.5}]
    cal = {"scaffold-s0": {"test_id": {"n": 4, "accuracy": 0.5, "ece": 0.45, "curve": curve}}}
    (tmp_path / "results.json").write_text(json.dumps({"entries": [], "calibration": cal}))
    html = calibration_table(tmp_path)
    assert "<td>scaffold-s0</td><td>test_id</td><td>4</td><td>0.500</td><td>0.450</td>" in html
    assert "0.95→0.50 (n 4)" in html
