"""Benchmark loaders: every format the sources ship, gold answers scored back as predictions, shuffled
answers near chance, and a clear error when the hub cannot be reached."""

from __future__ import annotations

import importlib
import importlib.util
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from rscaffold.answers import EXTRACTIONS
from rscaffold.benchmarks import BENCHMARKS, SPECS
from rscaffold.benchmarks.common import ANSWER_FORMAT, read_records
from rscaffold.config import TestbedConfig
from rscaffold.evaluate import score_answer
from rscaffold.schema import InputError, Question
from rscaffold.testbed.problems import write_splits
from tests.conftest import SHARED

FOLDERS = {
    "gsm8k": ("gsm8k", 1319),
    "math500": ("math500", 500),
    "strategyqa": ("strategyqa", 229),
    "commonsenseqa": ("commonsenseqa", 1221),
    "truthfulqa": ("truthfulqa", 817),
    "svamp": ("svamp", 1000),
    "gsm_hard": ("gsm_hard", 1319),
    "gsm_plus": ("gsm_plus", 2400),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict[str, list[Question]]:
    """Every benchmark's default split: the shared files, and a small testbed made here."""
    out = {}
    for name, (folder, _) in FOLDERS.items():
        if (SHARED / "benchmarks" / folder).is_dir():
            out[name] = list(BENCHMARKS[name](SHARED / "benchmarks" / folder))
    tb = tmp_path_factory.mktemp("testbed")
    write_splits(TestbedConfig(train=5, test_id=200, test_ood=5, test_surface=5, perturbed_groups=5), 0, tb)
    out["testbed"] = list(BENCHMARKS["testbed"](tb, "test_id"))
    return out


def _questions(loaded: dict[str, list[Question]], name: str) -> list[Question]:
    if name not in loaded:
        pytest.skip(f"{SHARED / 'benchmarks' / FOLDERS[name][0]} not found (set RSCAFFOLD_SHARED_DATA)")
    return loaded[name]


def _score(name: str, questions: list[Question], predictions: list[str], which: str) -> float:
    ex = EXTRACTIONS[SPECS[name].extraction]
    hits = [
        score_answer(ex, p, q.gold, q.metadata)[f"correct_{which}"] for p, q in zip(predictions, questions, strict=True)
    ]
    return sum(hits) / len(hits)


@pytest.mark.parametrize("name", [*FOLDERS, "testbed"])
def test_gold_answers_score_one(loaded, name: str) -> None:
    questions = _questions(loaded, name)
    if name in FOLDERS:
        assert len(questions) == FOLDERS[name][1]
    assert len({q.id for q in questions}) == len(questions)
    assert all(q.task == name and q.gold for q in questions)
    formatted = [f"Some reasoning.\n\n{ANSWER_FORMAT.format(answer=q.gold)}" for q in questions]
    assert _score(name, questions, formatted, "strict") == 1.0
    assert _score(name, questions, formatted, "flexible") == 1.0
    assert _score(name, questions, [q.gold for q in questions], "flexible") == 1.0


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "math500" else n for n in [*FOLDERS, "testbed"]]
)
def test_shuffled_answers_score_near_chance(loaded, name: str) -> None:
    questions = _questions(loaded, name)[:300]  # math-verify takes ~15 ms a comparison
    golds = [q.gold for q in questions]
    shuffled = golds[:]
    random.Random(0).shuffle(shuffled)
    formatted = [ANSWER_FORMAT.format(answer=g) for g in shuffled]
    chance = sum((c / len(golds)) ** 2 for c in Counter(golds).values())
    score = _score(name, questions, formatted, "strict")
    assert abs(score - chance) < 0.1, (score, chance)


def test_choice_benchmarks_list_options_and_spread_gold(loaded) -> None:
    for name in ("commonsenseqa", "truthfulqa"):
        questions = _questions(loaded, name)
        q = questions[0]
        assert q.gold in q.metadata["choices"]
        assert f"{q.gold}. {q.metadata['choices'][q.gold]}" in q.text
        # The source lists the true mc1 answer first; the loader must not leave it at "A".
        assert max(Counter(q.gold for q in questions).values()) < 0.4 * len(questions)


def test_gsm_plus_has_groups_and_perturbations(loaded) -> None:
    questions = _questions(loaded, "gsm_plus")
    groups = Counter(q.metadata["group"] for q in questions)
    assert len(groups) == 300 and set(groups.values()) == {8}
    assert len({q.metadata["perturbation"] for q in questions}) == 8


def test_every_shipped_format_reads_the_same(tmp_path: Path) -> None:
    """JSONL, JSON, CSV and Parquet copies of the same records give the same questions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(5)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "a.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    with open(tmp_path / "a.csv", "w", newline="") as f:
        import csv

        writer = csv.DictWriter(f, fieldnames=["question", "answer"])
        writer.writeheader()
        writer.writerows(rows)
    loads = [list(BENCHMARKS["gsm8k"](tmp_path / f"a.{ext}")) for ext in ("jsonl", "json", "csv", "parquet")]
    assert all(qs == loads[0] for qs in loads) and [q.gold for q in loads[0]] == ["1", "2", "3", "4", "5"]


def test_truthfulqa_csv_matches_mc_file() -> None:
    folder = SHARED / "benchmarks" / "truthfulqa"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    from_csv = list(BENCHMARKS["truthfulqa"](folder / "TruthfulQA.csv"))
    assert len(from_csv) == 817 and all(q.gold in q.metadata["choices"] for q in from_csv)


def test_bad_input_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "x"}) + "\n")
    with pytest.raises(InputError, match="field 'answer'"):
        list(BENCHMARKS["gsm8k"](bad))
    with pytest.raises(InputError, match="unknown benchmark file type"):
        list(read_records(tmp_path / "x.txt"))
    with pytest.raises(InputError, match="no gsm8k test file"):
        list(BENCHMARKS["gsm8k"](tmp_path))


def test_hub_offline_is_a_clear_input_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # The libraries read these once, at import: another test may have imported them online already
    # (then each hub call waits for the network to fail).
    for module in ("huggingface_hub.constants", "datasets.config"):
        if importlib.util.find_spec(module.split(".")[0]):
            for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
                monkeypatch.setattr(importlib.import_module(module), name, True, raising=False)
    with pytest.raises(InputError, match=r"gsm8k: .*(datasets|hub)"):
        next(BENCHMARKS["gsm8k"](None))


def test_every_benchmark_names_version_prompt_and_extraction() -> None:
    for name, spec in SPECS.items():
        assert spec.name == name and spec.version and spec.prompt
        assert spec.extraction in EXTRACTIONS
        assert spec.default_split in spec.files
