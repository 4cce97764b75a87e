"""Scoring a model on a benchmark: one command (`evaluate --student`), and the pipeline with `--benchmark`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rscaffold.cli import main

GSM8K = [
    {"question": "Ann has 3 apples and buys 4 more. How many apples does she have?", "answer": "3+4=7\n#### 7"},
    {"question": "Bo had 10 pens and gave 2 away. How many pens are left?", "answer": "10-2=8\n#### 8"},
    {"question": "A box holds 6 eggs. How many eggs are in 2 boxes?", "answer": "6*2=12\n#### 12"},
    {"question": "Cy reads 5 pages a day for 3 days. How many pages?", "answer": "5*3=15\n#### 15"},
]


@pytest.fixture
def gsm8k_file(tmp_path) -> Path:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in GSM8K))
    return path


def _score(student, gsm8k_file, out, *extra):
    argv = ["evaluate", "--student", str(student), "--benchmark", "gsm8k", "--benchmark-path", str(gsm8k_file)]
    return main([*argv, "--limit", "3", "--output", str(out), "decode.max_tokens=12", *extra])


def test_evaluate_student_decodes_and_scores_a_benchmark(served_student, gsm8k_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "score"
    assert _score(served_student, gsm8k_file, out) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["benchmark"], results["split"], results["n"], results["limit"]) == ("gsm8k", "test", 3, 3)
    assert {"mean", "lo", "hi"} <= set(results["pass@1_strict"])
    decoded = [json.loads(line) for line in (out / "decoded.jsonl").read_text().splitlines()]
    assert [d["gold"] for d in decoded] == ["7", "8", "12"]  # the first three, gold after ####
    assert len((out / "scored.jsonl").read_text().splitlines()) == 3
    assert "gsm8k/test n=3 pass@1" in capsys.readouterr().out

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr("rscaffold.decode.decode_file", no_decoding)
    assert _score(served_student, gsm8k_file, out) == 0  # same settings: scored again, not decoded
    assert _score(served_student, gsm8k_file, out, "decode.max_tokens=13") == 2
    assert "decoded with other settings" in capsys.readouterr().err


def test_evaluate_student_rejects_bad_input(served_student, gsm8k_file, tmp_path, capsys):
    assert _score(served_student, gsm8k_file, tmp_path / "a", "--benchmark", "gsm9k") == 2
    assert "unknown benchmark 'gsm9k'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # nothing written
    assert main(["evaluate", "--student", str(served_student), "--benchmark", "gsm8k"]) == 2
    assert "--output DIR" in capsys.readouterr().err
    assert main(["evaluate", "--run-dir", str(tmp_path), "--limit", "3"]) == 2


def test_run_decodes_every_variant_on_a_benchmark(served_student, gsm8k_file, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(served_student, run / "students" / "scaffold-s0")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "model: {base: testbed}\n"
        "experiment:\n"
        "  students: [{name: scaffold, recipe: scaffold}]\n"
        "  variants:\n"
        "    - {name: predictor-gate, student: scaffold, source: predictor-head}\n"
        "    - {name: golden, student: scaffold, source: golden}\n"
        "    - {name: free, student: original}\n"
        "  comparisons: []\n"
        "  signal_quality: []\n"
        "decode: {max_tokens: 12}\n"
    )
    argv = ["run", "--config", str(config), "--run-dir", str(run), "run.stages=[decode,evaluate]"]
    assert main([*argv, "--benchmark", "gsm8k", "--benchmark-path", str(gsm8k_file), "--limit", "2"]) == 0
    decoded = sorted(p.name for p in (run / "decoded").glob("*.jsonl"))
    # golden variants need teacher traces of the questions: a benchmark has none offline
    assert decoded == ["original-s0__free__gsm8k-test.jsonl", "scaffold-s0__predictor-gate__gsm8k-test.jsonl"]
    entries = json.loads((run / "results.json").read_text())["entries"]
    assert {(e["student"], e["benchmark"], e["n"]) for e in entries} == {
        ("original", "gsm8k", 2),
        ("scaffold", "gsm8k", 2),
    }
    original = [json.loads(line) for line in (run / "decoded" / decoded[0]).read_text().splitlines()]
    assert {r["method"] for r in original} == {"original"} and [r["gold"] for r in original] == ["7", "8"]
    assert main([*argv, "--limit", "2"]) == 2  # --limit without --benchmark
