"""label-report: coverage, distributions, accuracy against truth, kappa, Thought Anchors tags."""

from __future__ import annotations

import argparse
import json
import zlib
from collections import Counter
from pathlib import Path

import pytest

from rscaffold.config import LabelConfig
from rscaffold.label import run_policy
from rscaffold.label.fit import scripted_traces
from rscaffold.label.quality import (
    FUNCTION_TAGS,
    JUDGED,
    accuracy,
    against_reference,
    agreement,
    cmd_label_report,
    kappa,
    load_function_tags,
    reference_labels,
    report_file,
    step_tags,
)
from rscaffold.schema import InputError, Step, Trace, write_jsonl
from rscaffold.signals import Signal


def _args(**kw) -> argparse.Namespace:
    base = {
        "files": [],
        "json": False,
        "against_truth": False,
        "compare": None,
        "function_tags": None,
        "labeller": None,
        "against": None,
        "held_out": False,
    }
    return argparse.Namespace(**(base | kw))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path]:
    """The same 40 scripted traces labelled twice: keywords only, and the default policy."""
    folder = tmp_path_factory.mktemp("report")
    traces = scripted_traces(40, seed=99)
    write_jsonl(folder / "kw.jsonl", run_policy(traces, LabelConfig(learned=None)))
    write_jsonl(folder / "full.jsonl", run_policy(traces, LabelConfig()))
    return folder / "kw.jsonl", folder / "full.jsonl"


def test_kappa_known_values():
    assert kappa(Counter({("a", "a"): 10, ("b", "b"): 10})) == 1.0
    # observed 0.7, expected 0.5 -> kappa 0.4
    assert kappa(Counter({("a", "a"): 35, ("a", "b"): 15, ("b", "a"): 15, ("b", "b"): 35})) == 0.4


def test_agreement_ignores_unlabelled_steps_and_builds_the_confusion():
    a = agreement(Counter({("contrast", "contrast"): 3, ("contrast", "reasoning"): 1, ("none", "reasoning"): 5}))
    assert (a["steps"], a["compared"], a["agreement"]) == (9, 4, 0.75)
    assert a["confusion"] == {"contrast": {"contrast": 3, "reasoning": 1}}


def test_accuracy_checks_the_issue_targets():
    good = accuracy(Counter({("reasoning", "reasoning"): 96, ("reasoning", "none"): 4, ("opinion", "opinion"): 9}))
    assert good["meets_target"] and good["by_signal"]["reasoning"] == 0.96
    bad = accuracy(Counter({("reasoning", "reasoning"): 100, ("opinion", "opinion"): 8, ("opinion", "contrast"): 2}))
    assert not bad["meets_target"]


def test_report_of_a_testbed_file(labelled):
    kw, full = labelled
    s = report_file(full)
    assert s["coverage"]["labelled"] == 1.0 and set(s["coverage"]["by"]) <= {"keyword", "learned"}
    assert s["coverage_by_source"]["scripted"]["steps"] == s["coverage"]["steps"]
    assert s["truth"]["meets_target"]
    assert abs(sum(s["signal_distribution"].values()) - 1) < 1e-3
    assert report_file(kw)["coverage"]["labelled"] < 0.9


def test_command_prints_truth_and_compare(labelled, capsys):
    kw, full = labelled
    assert cmd_label_report(_args(files=[full], against_truth=True, compare=[kw, full])) == 0
    text = capsys.readouterr().out
    assert "against true signals" in text and "meets the target" in text and "Cohen's kappa" in text
    assert cmd_label_report(_args(files=[kw], json=True)) == 0
    assert "coverage" in json.loads(capsys.readouterr().out)[str(kw)]


def test_against_truth_needs_true_signals(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [Trace(question_id="q", thinking="a", steps=[Step(text="a")])])
    with pytest.raises(InputError, match="true signal"):
        cmd_label_report(_args(files=[path], against_truth=True))


def test_step_tags_align_sentence_chunks_to_steps():
    texts = ["Okay, the problem. It asks for x.", "Compute 2 + 3 = 5.", "Wait, maybe not."]
    trace = Trace(
        question_id="q",
        thinking="\n\n".join(texts),
        steps=[Step(text=t, sep="\n\n" if i < 2 else "") for i, t in enumerate(texts)],
    )
    chunks = [
        {"chunk": "Okay, the problem.", "function_tags": ["problem_setup"]},
        {"chunk": "It asks for x.", "function_tags": ["fact_retrieval"]},
        {"chunk": "missing text", "function_tags": ["self_checking"]},
        {"chunk": "Compute 2 + 3 = 5.", "function_tags": ["result_consolidation"]},
        {"chunk": "Wait, maybe not.", "function_tags": ["uncertainty_management"]},
    ]
    assert step_tags(trace, chunks) == [Signal.REASONING, Signal.CONCLUSION, Signal.CONTRAST]


def test_mapping_covers_every_tag_of_the_shared_chunks(shared_traces):
    tags = load_function_tags(shared_traces / "thought_anchors_math" / "chunks_labeled")
    seen = {t for chunks in tags.values() for c in chunks for t in c.get("function_tags", [])}
    assert seen <= set(FUNCTION_TAGS)


def test_command_prints_the_labellers_held_out_scores_under_a_heading_per_kind(capsys):
    assert cmd_label_report(_args(labeller="default")) == 0
    text = capsys.readouterr().out
    assert "against the judge on held-out judged steps" in text and "learned_overrule 0.0" in text
    assert "judge/thought_anchors_math" in text and "kappa" in text
    assert cmd_label_report(_args(labeller="distant")) == 0
    text = capsys.readouterr().out
    assert "keyword removed" in text and "keyword/real" in text and "judge" not in text


def _trace(qid: str, signals: list[Signal | None]) -> Trace:
    steps = [Step(text=f"step {i}", sep="\n\n", signal=s) for i, s in enumerate(signals)]
    final = Step(text="42", signal=Signal.RESPONSE)
    return Trace(question_id=qid, question="q", teacher="t", thinking="", steps=[*steps, final])


def test_against_a_reference_counts_unlabelled_steps_as_misses_and_gives_recall(tmp_path, capsys):
    """Four reference steps: one Contrast (missed: labelled Reasoning), one Reasoning (right), one
    Conclusion (left unlabelled), one held out and labelled right: agreement 1/3, then 2/4."""
    rows = [
        {"teacher": "t", "question_id": "a", "index": 0, "signal": "contrast", "split": "train"},
        {"teacher": "t", "question_id": "a", "index": 1, "signal": "reasoning", "split": "train"},
        {"teacher": "t", "question_id": "a", "index": 2, "signal": "conclusion", "split": "train"},
        {"teacher": "t", "question_id": "b", "index": 0, "signal": "reasoning", "split": "held_out"},
        {"teacher": "other", "question_id": "a", "index": 0, "signal": "contrast", "split": "train"},
    ]
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labelled = tmp_path / "labelled.jsonl"
    write_jsonl(labelled, [_trace("a", [Signal.REASONING, Signal.REASONING, None]), _trace("b", [Signal.REASONING])])
    whole = against_reference(labelled, reference_labels(ref))
    assert whole["agreement"] == 0.5 and (whole["steps"], whole["compared"]) == (4, 3)
    assert whole["recall"] == {"contrast": 0.0, "reasoning": 1.0, "conclusion": 0.0}
    held = against_reference(labelled, reference_labels(ref, held_out=True))
    assert held["agreement"] == 1.0 and held["compared"] == 1
    assert cmd_label_report(_args(files=[labelled], against=str(ref), held_out=True, json=True)) == 0
    printed = json.loads(capsys.readouterr().out)[str(labelled)]["against"]
    assert printed["agreement"] == 1.0 and printed["recall"] == {"reasoning": 1.0}
    # the same reference given as labelled traces
    traces = tmp_path / "ref_traces.jsonl"
    write_jsonl(traces, [_trace("a", [Signal.CONTRAST, Signal.REASONING, Signal.CONCLUSION])])
    assert against_reference(labelled, reference_labels(traces))["agreement"] == pytest.approx(1 / 3, abs=1e-3)


def test_the_shipped_judge_labels_are_whole_traces_split_by_trace():
    rows = [json.loads(line) for line in JUDGED.read_text().splitlines()]
    assert len(rows) >= 3000 and {r["signal"] for r in rows} <= {s.key for s in Signal}
    by_trace: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_trace.setdefault((r["teacher"], r["question_id"]), []).append(r)
    for steps in by_trace.values():
        assert sorted(r["index"] for r in steps) == list(range(len(steps)))  # the whole context is there
        assert len({r["split"] for r in steps}) == 1
    # identical traces (the same steps under two ids) are on one side, that of their smallest (teacher, id)
    alike: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for key, steps in by_trace.items():
        alike.setdefault(tuple(r["text"] for r in steps), []).append(key)
    for keys in alike.values():
        teacher, qid = min(keys)
        held = zlib.crc32(f"{teacher}|{qid}".encode()) % 5 == 0
        assert {by_trace[k][0]["split"] for k in keys} == {"held_out" if held else "train"}


def test_the_shipped_judge_label_is_the_majority_of_three_judge_runs():
    rows = [json.loads(line) for line in JUDGED.read_text().splitlines()]
    for r in rows:
        assert len(r["votes"]) == 3 and set(r["votes"]) <= {s.key for s in Signal if s is not Signal.RESPONSE}
        top, n = Counter(r["votes"]).most_common(1)[0]
        assert r["signal"] == (top if n >= 2 else r["votes"][0])
        assert not r["sure"] or n == 3  # sure: all three alike (and each judge sure)
    assert sum(len(set(r["votes"])) == 1 for r in rows) / len(rows) > 0.8


@pytest.mark.parametrize(
    "line", ['{"teacher": "t"}', '{"teacher": "t", "question_id": "a", "index": "0", "signal": "x"}']
)
def test_a_bad_reference_row_is_one_clear_error(tmp_path, line):
    ref = tmp_path / "ref.jsonl"
    ref.write_text(line + "\n")
    with pytest.raises(InputError, match=r"ref.jsonl:1: expected"):
        reference_labels(ref)
