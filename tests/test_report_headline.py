"""The headline: trivial rates, rows pooled over seeds, paired differences."""

from __future__ import annotations

from rscaffold.config import ExperimentConfig
from rscaffold.report.headline import headline, paired_difference


def test_paired_difference_pairs_by_question():
    a = {(0, "q1"): True, (0, "q2"): True, (0, "q3"): False}
    b = {(0, "q1"): False, (0, "q2"): True, (0, "q4"): True}
    d = paired_difference(a, b)
    assert d["n"] == 2 and d["mean"] == 0.5
    assert d["lo"] <= d["mean"] <= d["hi"]


def test_headline_of_a_run_without_decodes_is_empty(tmp_path):
    (tmp_path / "testbed").mkdir()
    records = '{"id":"a","text":"t","gold":"1"}\n{"id":"b","text":"t","gold":"1"}\n'
    (tmp_path / "testbed" / "test_id.jsonl").write_text(records)
    h = headline(tmp_path, ExperimentConfig())
    assert h["splits"]["test_id"]["trivial"]["rate"] == 1.0
    assert h["splits"]["test_id"]["rows"] == {} and h["splits"]["test_id"]["comparisons"] == []
