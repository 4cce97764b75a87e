"""The run folder: paths, the manifest, and what never goes into either (a key typed by mistake)."""

from __future__ import annotations

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
