"""Decoding over processes and resumed decoding: the merged output equals a single-process run record
for record; an interrupted run continues from what its parts hold."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rscaffold import parallel
from rscaffold.config import DecodeConfig
from rscaffold.decode import Decoder, decode_file
from rscaffold.schema import Question, write_jsonl
from tests.test_train import ROOT, _launcher


def same_records(a: Path, b: Path) -> bool:
    """Equal record for record: texts, signals, answers, token counts and stop reasons exactly; the
    predictor's confidences to 1e-5 (rows batched with other rows get float noise in the last digits)."""
    x, y = (
        [json.loads(line) for line in a.read_text().splitlines()],
        [json.loads(line) for line in b.read_text().splitlines()],
    )
    confidences = []
    for rows in (x, y):
        confidences.append([s.pop("confidence", None) for r in rows for s in r.get("steps", [])])
    return x == y and confidences[0] == pytest.approx(confidences[1], abs=1e-5)


CFG = DecodeConfig(max_steps=3, max_step_tokens=8, max_answer_tokens=6, tau=0.0, batch_size=3, device="cpu")
QUESTIONS = [Question(id=f"q{i}", text=f"B has {i} apples and C has {i + 3}. How many?") for i in range(7)]


class Interrupted(Exception):
    pass


def _questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    write_jsonl(path, QUESTIONS)
    return path


def test_an_interrupted_decode_resumes_where_it_stopped(served_student, tmp_path, monkeypatch):
    questions = _questions(tmp_path)
    whole = tmp_path / "whole.jsonl"
    decode_file(CFG, served_student, questions, whole, {})
    out = tmp_path / "out.jsonl"
    original = Decoder.__call__
    fed: list[str] = []

    def stop_after_four(self, qs):
        for i, d in enumerate(original(self, qs)):
            if i == 4:
                raise Interrupted
            yield d

    monkeypatch.setattr(Decoder, "__call__", stop_after_four)
    with pytest.raises(Interrupted):
        decode_file(CFG, served_student, questions, out, {})
    assert not out.exists()  # nothing half written where the output goes
    (part,) = tmp_path.glob(".out.jsonl.part-0-of-1-*.jsonl")
    assert len(part.read_text().splitlines()) == 4
    with part.open("a") as f:
        f.write('{"question_id": "q4", "quest')  # a line cut short by the kill

    def counting(self, qs):
        for q in qs:
            fed.append(q.id)
        yield from original(self, [q for q in QUESTIONS if q.id in fed])

    monkeypatch.setattr(Decoder, "__call__", counting)
    decode_file(CFG, served_student, questions, out, {})
    assert fed == ["q4", "q5", "q6"]  # only what the part did not hold
    assert same_records(out, whole)
    assert not list(tmp_path.glob(".out.jsonl.part-*"))


def test_parts_of_other_settings_are_not_resumed(served_student, tmp_path):
    questions = _questions(tmp_path)
    out = tmp_path / "out.jsonl"
    stale = parallel.part_path(out, "0123456789abcdef", 0, 1)
    stale.write_text('{"question_id": "other"}\n')
    decode_file(CFG, served_student, questions, out, {})
    assert "other" not in out.read_text() and len(out.read_text().splitlines()) == len(QUESTIONS)
    assert not stale.exists()


def test_shards_merge_in_input_order(served_student, tmp_path, monkeypatch):
    """Two ranks simulated in one process (no meeting point needed: rank 1 runs first)."""
    questions = _questions(tmp_path)
    whole = tmp_path / "whole.jsonl"
    decode_file(CFG, served_student, questions, whole, {})
    out = tmp_path / "out.jsonl"
    monkeypatch.setattr(parallel, "Group", lambda w: type("G", (), {"device": None, "wait": lambda self: None})())
    for rank in (1, 0):
        monkeypatch.setattr(parallel, "world", lambda rank=rank: parallel.World(rank, 2))
        summary = decode_file(CFG, served_student, questions, out, {})
        assert summary["processes"] == 2
    assert same_records(out, whole)


@pytest.mark.slow
def test_two_processes_decode_what_one_does(served_student, tmp_path):
    questions = _questions(tmp_path)
    one = tmp_path / "one.jsonl"
    decode_file(CFG, served_student, questions, one, {})
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    two = tmp_path / "two.jsonl"
    overrides = [f"decode.{k}={v}" for k, v in CFG.model_dump(exclude_defaults=True).items()]
    cmd = [*_launcher(), "-m", "rscaffold.cli", "decode", "--student", str(served_student)]
    cmd += ["--input", str(questions), "--output", str(two), *overrides]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"processes": 2' in done.stdout
    assert same_records(two, one)


def test_under_a_launcher_only_the_first_process_runs_the_stages_that_write_shared_files(tmp_path, monkeypatch):
    from rscaffold import pipeline
    from rscaffold.config import Config

    ran, waits = [], []
    monkeypatch.setattr(parallel, "Group", lambda w: type("G", (), {"wait": lambda self: waits.append(w.rank)})())
    monkeypatch.setitem(pipeline.RUNNERS, "stats", lambda cfg, run_dir: ran.append("stats") or {"records": 1})
    monkeypatch.setitem(pipeline.RUNNERS, "decode", lambda cfg, run_dir: ran.append("decode") or {"decoded": 1})
    for rank in (1, 0):
        monkeypatch.setattr(parallel, "world", lambda rank=rank: parallel.World(rank, 2))
        for stage in ("stats", "decode"):
            pipeline.run_stage(stage, Config(), tmp_path)
    assert ran == ["decode", "stats", "decode"]  # rank 1: decode only; rank 0: both
    assert waits == [1, 0]  # both met after the stats stage
    assert '"stats"' in (tmp_path / "manifest.json").read_text()
