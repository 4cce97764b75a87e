"""The run folder: paths, the manifest, and what never goes into either (a key typed by mistake)."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from rscaffold import runs
from rscaffold.cli import main
from rscaffold.config import load_config
from rscaffold.schema import Trace, write_jsonl

KEY = "sk-proj-Zq7xT3stK3y0nly4Tests9f2"


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    write_jsonl(runs.traces(run), [Trace(question_id="q", thinking="First.\n\nSo 3.", answer_text="3")])
    return run


def _segment(run: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> int:
    """``rscaffold segment --run-dir RUN OVERRIDES``, with sys.argv as the shell would set it (the manifest
    records it)."""
    argv = ["segment", "--run-dir", str(run), *overrides]
    monkeypatch.setattr(sys, "argv", ["rscaffold", *argv])
    return main(argv)


@pytest.mark.parametrize(
    "override",
    [
        f"generate.api.api_key_env={KEY}",
        f"judge.api_key_env={KEY}",
        f"generate.api.base_url=https://user:{KEY}@api.example.com/v1",
        f"judge.base_url=https://{KEY}@api.example.com/v1",
    ],
)
def test_a_key_typed_into_the_config_never_reaches_the_run_folder(tmp_path, monkeypatch, capsys, caplog, override):
    run = _run_folder(tmp_path)
    caplog.set_level(logging.DEBUG)
    assert _segment(run, monkeypatch, override) == 2
    out, err = capsys.readouterr()
    assert err.startswith("rscaffold: error: config key ") and err.count("\n") == 1, err
    key = override.partition("=")[0]
    assert f"'{key}'" in err
    assert KEY not in out + err + caplog.text
    leaked = [p for p in run.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []
    assert not runs.segmented(run).exists()


def test_the_variable_name_is_kept(tmp_path, monkeypatch, capsys):
    run = _run_folder(tmp_path)
    assert _segment(run, monkeypatch, "generate.api.api_key_env=MY_TEACHER_KEY", "judge.api_key_env=") == 0
    cfg = load_config(run / "config.yaml")
    assert (cfg.generate.api.api_key_env, cfg.judge.api_key_env) == ("MY_TEACHER_KEY", None)
    assert runs.segmented(run).exists()


def test_the_manifest_masks_credentials_in_the_command(tmp_path, monkeypatch):
    argv = ["rscaffold", "x", f"--url=https://me:{KEY}@host/v1", f"serve.api_key={KEY}", "a.api_key_env=NAME"]
    monkeypatch.setattr(sys, "argv", argv)
    runs.record_stage(tmp_path, load_config(), "segment", {})
    command = json.loads((tmp_path / "manifest.json").read_text())["command"]
    assert command == ["rscaffold", "x", "--url=https://***@host/v1", "serve.api_key=***", "a.api_key_env=NAME"]


def test_decoding_names_round_trip():
    d = runs.Decoding("scaffold", 1, "tau-0.5", "test_id")
    assert runs.Decoding.parse(d.stem) == d and d.row == "scaffold__tau-0.5"
    assert runs.Decoding.parse("not-a-pipeline-name") is None


class _Log(io.StringIO):
    def isatty(self) -> bool:  # a log file, CI or `| tee`: no bar
        return False


def test_progress_off_a_terminal_prints_lines_at_most_every_interval_and_at_the_end(monkeypatch):
    now = [0.0]
    log = _Log()
    monkeypatch.setenv("RSCAFFOLD_PROGRESS_SECONDS", "10")
    bar = runs.Progress("decode scaffold", total=100, stream=log, clock=lambda: now[0])
    for _ in range(41):  # 41 items in 20.5 s: lines at 10 s and 20 s, then the last one
        now[0] += 0.5
        bar.update(failed=0)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("decode scaffold: 20/100 (20%), 2.00/s, about 40s left, failed 0")
    assert lines[1].endswith("decode scaffold: 40/100 (40%), 2.00/s, about 30s left, failed 0")
    assert lines[2].endswith("decode scaffold: 41/100 (41%), 2.00/s, about 30s left, failed 0")


def test_progress_of_an_iterable_without_length_counts_and_short_runs_print_nothing(monkeypatch):
    log = _Log()
    monkeypatch.setattr(runs.sys, "stderr", log)
    assert list(runs.progress(iter(range(3)), "label")) == [0, 1, 2]
    assert log.getvalue() == ""  # done within the interval: nothing to say
    monkeypatch.setenv("RSCAFFOLD_PROGRESS_SECONDS", "0")
    assert list(runs.progress(iter(range(3)), "label")) == [0, 1, 2]
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and " label: 3, " in lines[-1] and lines[-1].endswith("/s")  # no total known
