"""`rscaffold report`: the page, its PNGs, and a render in headless Chromium with no script errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rscaffold import evaluate
from rscaffold.cli import main
from rscaffold.config import Config, EvaluateConfig, ReportConfig
from rscaffold.report import write_report
from rscaffold.schema import Decoded as DecodedRecord
from rscaffold.schema import InputError, read_jsonl, write_jsonl
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


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=3000", "--dump-dom"]  # fmt: skip
    done = subprocess.run([chromium, *flags, report.as_uri()], capture_output=True, text=True, timeout=60)
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    errors = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.DOTALL)
    assert errors is not None and errors.group(1).strip() == "", errors.group(1) if errors else dom[:2000]
    assert not re.search(r"Uncaught|CONSOLE\(\d+\).*error", done.stderr), done.stderr[-2000:]
    assert dom.count("<tr>") == 1 + 4  # the comparison table
    assert dom.count('class="q right"') + dom.count('class="q wrong"') == 4 * 20  # the viewer drew every card
    assert 'class="q wrong"' in dom and 'class="q right"' in dom and 'class="sig"' in dom
    assert "&lt;/script&gt;&lt;script&gt;throw" in dom  # the injected markup is shown as text, not run
    assert "80 of 80 shown" in dom


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
