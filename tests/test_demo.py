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
    assert (run / "decoded" / "oracle-cot-s0__free__test_id.jsonl").exists()
    for variant in ("golden", "random", "none", "summaries"):
        assert (run / "decoded" / f"scaffold-s0__{variant}__test_id.jsonl").exists()
    assert (run / "golden" / "test_id.jsonl").exists()
    results = json.loads((run / "results.json").read_text())
    variants = {(e["student"], e["variant"], e["split"]) for e in results["entries"]}
    assert ("scaffold-s0", "golden", "test_id") in variants
    page = (run / "report" / "index.html").read_text()
    assert 'id="headline"' in page and "most-common answer" in page


def test_demo_trains_every_recipe_for_the_same_epochs_over_the_same_problems(demo_run):
    run, _ = demo_run
    build = json.loads((run / "build" / "stats.json").read_text())
    for name, data in [
        ("scaffold", "proposer"),
        ("cot-sft", "cot"),
        ("long-sft", "long"),
        ("oracle-cot", "oracle_cot"),
    ]:
        t = json.loads((run / "students" / f"{name}-s0" / "rscaffold_student.json").read_text())["train"]
        assert t["token_budget"] is None and t["examples"] == build["sets"][data]["records"]
        assert t["steps"] == -(-t["examples"] // 8)  # one epoch at batch 8 (demo.yaml: train.epochs 1)
    assert build["sets"]["cot"]["records"] == build["sets"]["long"]["records"] == build["sets"]["proposer"]["records"]


def test_headline_has_trivial_rates_and_the_fixed_comparisons(demo_run):
    run, _ = demo_run
    h = json.loads((run / "headline.json").read_text())
    for split in ("test_id", "test_surface", "test_perturbed", "test_ood"):
        entry = h["splits"][split]
        rate, answer, n = trivial_rate(run / "testbed" / f"{split}.jsonl")
        assert entry["trivial"] == {"rate": rate, "answer": answer}
        pairs = {(c["a"], c["b"]): c["difference"] for c in entry["comparisons"]}
        for baseline in ("long-sft__free", "cot-sft__free"):  # (a) and (b), whatever their sign
            assert pairs[("scaffold__predictor-gate", baseline)]["n"] == n
    quality = {c["a"] for c in h["splits"]["test_id"]["comparisons"] if c["name"].startswith("(c)")}
    assert quality == {
        "scaffold__golden", "scaffold__random", "scaffold__none", "scaffold__summaries"
    }  # fmt: skip
    text = format_headline(h)
    assert "(a) mechanism" in text and "(b) paper's claim" in text and "(c) signal quality" in text
    assert set(h["probe"]["accuracy"]) == {"N =", "N has", "Here N has", "and N has"}


def test_demo_resumes_without_redoing_work(demo_run, capsys):
    run, _ = demo_run
    (run / "headline.json").unlink()
    decoded = run / "decoded" / "cot-sft-s0__free__test_ood.jsonl"
    decoded.unlink()
    stamp = (run / "students" / "scaffold-s0" / "model.safetensors").stat().st_mtime
    assert main(["demo", "--run-dir", str(run), *TINY]) == 0
    assert decoded.exists()
    assert (run / "students" / "scaffold-s0" / "model.safetensors").stat().st_mtime == stamp
    assert (run / "headline.json").exists()
    assert "kept" in capsys.readouterr().err


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
    assert h["splits"]["test_id"]["rows"] == {} and h["splits"]["test_id"]["comparisons"] == []


def test_a_student_trains_only_for_its_own_seeds_and_its_variants_follow(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import rscaffold.decode
    import rscaffold.train
    from rscaffold import demo
    from rscaffold.config import Config

    trained, decoded = [], []

    def train(tcfg, mcfg, data, out):
        trained.append(out.name)
        return {"steps": 1, "tokens_per_s": 1.0, "final": {}}

    monkeypatch.setattr(rscaffold.train, "train", train)
    monkeypatch.setattr(rscaffold.decode, "decode_file", lambda cfg, student, q, out, extras: decoded.append(out.name))
    cfg = Config.model_validate({"demo": {
        "seeds": [0, 1],
        "students": [{"name": "a", "recipe": "scaffold"}, {"name": "b", "recipe": "cot-sft", "seeds": [0]}],
        "variants": [{"name": "free", "student": "a", "splits": ["test_id"]},
                     {"name": "free", "student": "b", "splits": ["test_id"]},
                     {"name": "gen", "student": "a", "predictor": "b", "source": "predictor-generative",
                      "splits": ["test_id"]}],
    }})  # fmt: skip
    monkeypatch.setattr(demo, "_say", lambda message: None)
    demo._train(cfg, tmp_path, cfg.demo)
    demo._decode(SimpleNamespace(decode=cfg.decode), tmp_path, cfg.demo)
    assert sorted(trained) == ["a-s0", "a-s1", "b-s0"]
    # a's seed 1 has no predictor b to decode with
    assert sorted(decoded) == [f"{r}__test_id.jsonl" for r in ("a-s0__free", "a-s0__gen", "a-s1__free", "b-s0__free")]
