"""The whole demo pipeline on a tiny configuration: data, build, golden traces, every recipe, every
decoding variant, evaluation, headline and report; then a rerun that resumes without redoing work."""

from __future__ import annotations

import json
import time

import pytest

from rscaffold.cli import main
from rscaffold.demo import format_headline, headline, paired_difference, trivial_rate

TINY = [
    "testbed.train=150",
    "testbed.test_id=24",
    "testbed.test_ood=12",
    "testbed.test_surface=12",
    "testbed.perturbed_groups=3",
    "model.tiny.hidden=32",
    "model.tiny.layers=1",
    "model.tiny.heads=2",
    "model.tiny.intermediate=64",
    "model.vocab_size=300",
    "train.max_tokens=6000",
    "decode.max_steps=3",
    "decode.max_step_tokens=16",
    "decode.max_answer_tokens=16",
    "decode.max_tokens=64",
    "decode.batch_size=16",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("demo") / "run"
    started = time.perf_counter()
    assert main(["demo", "--run-dir", str(run), *TINY]) == 0
    return run, time.perf_counter() - started


def test_demo_runs_every_step(demo_run, capsys):
    run, _ = demo_run
    for split in ("test_id", "test_surface", "test_perturbed", "test_ood"):
        assert (run / "testbed" / f"{split}.jsonl").exists()
        for student in ("scaffold-s0__predictor-gate", "cot-sft-s0__free", "long-sft-s0__free"):
            assert (run / "decoded" / f"{student}__{split}.jsonl").exists()
    for variant in ("golden", "random", "summaries"):
        assert (run / "decoded" / f"scaffold-s0__{variant}__test_id.jsonl").exists()
    assert (run / "golden" / "test_id.jsonl").exists()
    results = json.loads((run / "results.json").read_text())
    variants = {(e["student"], e["variant"], e["split"]) for e in results["entries"]}
    assert ("scaffold-s0", "golden", "test_id") in variants
    page = (run / "report" / "index.html").read_text()
    assert 'id="headline"' in page and "most-common answer" in page


def test_demo_gives_recipes_an_equal_token_budget(demo_run):
    run, _ = demo_run
    budgets = {}
    for name in ("scaffold", "cot-sft", "long-sft"):
        meta = json.loads((run / "students" / f"{name}-s0" / "rscaffold_student.json").read_text())
        t = meta["train"]
        budgets[name] = t["steps"] * t["tokens"]["mean"] * 8
        assert t["token_budget"] == 6000
    # Each planned its steps from its own mean length: within one step of the budget.
    for name, seen in budgets.items():
        assert abs(seen - 6000) <= 8 * 1024, (name, seen)
    assert len({round(b / 6000) for b in budgets.values()}) == 1


def test_headline_has_trivial_rates_and_the_comparison(demo_run):
    run, _ = demo_run
    h = json.loads((run / "headline.json").read_text())
    for split in ("test_id", "test_surface", "test_perturbed", "test_ood"):
        entry = h["splits"][split]
        rate, answer, n = trivial_rate(run / "testbed" / f"{split}.jsonl")
        assert entry["trivial"] == {"rate": rate, "answer": answer}
        assert entry["comparison"]["scaffold"] == "scaffold__predictor-gate"
        assert entry["comparison"]["best_baseline"] in ("cot-sft__free", "long-sft__free")
        assert entry["comparison"]["difference"]["n"] == n
    assert h["regime"]["reached"] is (
        h["regime"]["accuracy"] >= 0.30 and h["regime"]["accuracy"] >= 3 * h["regime"]["trivial"]
    )
    assert "regime on test_id" in format_headline(h)


def test_demo_resumes_without_redoing_work(demo_run, capsys):
    run, first = demo_run
    (run / "headline.json").unlink()
    decoded = run / "decoded" / "cot-sft-s0__free__test_ood.jsonl"
    decoded.unlink()
    stamp = (run / "students" / "scaffold-s0" / "model.safetensors").stat().st_mtime
    started = time.perf_counter()
    assert main(["demo", "--run-dir", str(run), *TINY]) == 0
    assert time.perf_counter() - started < first
    assert decoded.exists()
    assert (run / "students" / "scaffold-s0" / "model.safetensors").stat().st_mtime == stamp
    assert (run / "headline.json").exists()
    assert "kept" in capsys.readouterr().err


def test_demo_takes_under_three_minutes(demo_run):
    assert demo_run[1] < 180


def test_paired_difference_pairs_by_question():
    a = {(0, "q1"): True, (0, "q2"): True, (0, "q3"): False}
    b = {(0, "q1"): False, (0, "q2"): True, (0, "q4"): True}
    d = paired_difference(a, b)
    assert d["n"] == 2 and d["mean"] == 0.5
    assert d["lo"] <= d["mean"] <= d["hi"]


def test_headline_of_a_run_without_decodes_is_empty(tmp_path):
    from rscaffold.demo import DemoConfig

    (tmp_path / "testbed").mkdir()
    records = '{"id":"a","text":"t","gold":"1"}\n{"id":"b","text":"t","gold":"1"}\n'
    (tmp_path / "testbed" / "test_id.jsonl").write_text(records)
    h = headline(tmp_path, DemoConfig())
    assert h["splits"]["test_id"]["trivial"]["rate"] == 1.0
    assert h["splits"]["test_id"]["rows"] == {} and "regime" not in h
