"""The pipeline (``rscaffold demo``, ``rscaffold run``) on a tiny configuration: data, build, golden traces,
every recipe, every decoding variant, evaluation, headline and report; then a rerun that resumes."""

from __future__ import annotations

import json

import pytest

from rscaffold.cli import main
from rscaffold.report.headline import format_headline, trivial_rate

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
    assert main(["demo", "--run-dir", str(run), *TINY]) == 0
    return run, None


@pytest.mark.slow  # the tiny demo fixture takes 40 s: the default suite keeps within 3 minutes; CI runs it
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
    first = json.loads((run / "decoded" / "scaffold-s0__none__test_id.jsonl").read_text().splitlines()[0])
    assert first["metadata"]["golden_signals"], "rows on a split with golden traces record the golden signals"
    results = json.loads((run / "results.json").read_text())
    variants = {(e["student"], e["variant"], e["split"]) for e in results["entries"]}
    assert ("scaffold", "golden", "test_id") in variants
    page = (run / "report" / "index.html").read_text()
    assert 'id="headline"' in page and "most-common answer" in page


@pytest.mark.slow  # the tiny demo fixture takes 40 s: the default suite keeps within 3 minutes; CI runs it
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


@pytest.mark.slow  # the tiny demo fixture takes 40 s: the default suite keeps within 3 minutes; CI runs it
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


@pytest.mark.slow  # 6 s on top of the demo fixture
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


def test_a_student_trains_only_for_its_own_seeds_and_its_variants_follow(tmp_path, monkeypatch):
    from rscaffold import decode, train
    from rscaffold.config import Config

    trained, decoded = [], []

    def fake_train(tcfg, mcfg, data, out, resume=False, logs=None):
        trained.append(out.name + (" resumed" if resume else ""))
        out.mkdir(parents=True, exist_ok=True)
        return {"steps": 1, "tokens_per_s": 1.0, "final": {}}

    monkeypatch.setattr(train, "train", fake_train)
    monkeypatch.setattr(decode, "decode_file", lambda cfg, student, q, out, extras: decoded.append(out.name))
    (tmp_path / "build").mkdir()
    (tmp_path / "testbed").mkdir()
    (tmp_path / "testbed" / "test_id.jsonl").write_text('{"id": "a", "text": "t", "gold": "1"}\n')
    cfg = Config.model_validate({"experiment": {
        "seeds": [0, 1],
        "students": [{"name": "a", "recipe": "scaffold"}, {"name": "b", "recipe": "cot-sft", "seeds": [0]}],
        "variants": [{"name": "free", "student": "a", "splits": ["test_id"]},
                     {"name": "free", "student": "b", "splits": ["test_id"]},
                     {"name": "gen", "student": "a", "predictor": "b", "source": "predictor-generative",
                      "splits": ["test_id"]}],
    }})  # fmt: skip
    monkeypatch.setattr(train, "latest_checkpoint", lambda folder: folder if folder.parent.name == "b-s0" else None)
    assert train.run(cfg, tmp_path) == {"trained": 3}
    decode.run(cfg, tmp_path)
    assert sorted(trained) == ["a-s0", "a-s1", "b-s0 resumed"]  # b-s0 was cut short: it resumes
    # a's seed 1 has no predictor b to decode with
    assert sorted(decoded) == [f"{r}__test_id.jsonl" for r in ("a-s0__free", "a-s0__gen", "a-s1__free", "b-s0__free")]


def test_every_stage_has_one_runner_in_order():
    from rscaffold.config import STAGES
    from rscaffold.pipeline import RUNNERS

    assert tuple(RUNNERS) == STAGES


@pytest.mark.slow  # the tiny demo fixture takes 40 s: the default suite keeps within 3 minutes; CI runs it
def test_run_chains_any_stage_and_skips_finished_ones(demo_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo_run[0], run)
    (run / "results.json").unlink()
    stages = "run.stages=[testbed, generate, segment, label, stats, build, train, decode, evaluate]"
    assert main(["run", "--run-dir", str(run), *TINY, stages]) == 0
    err = capsys.readouterr().err
    assert "build: kept" in err and "train scaffold seed 0: kept" in err
    assert (run / "results.json").exists()
