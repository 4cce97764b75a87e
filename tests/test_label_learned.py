"""The learned labeller: features, keyword stripping, numpy == scikit-learn, files, the shipped model."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rscaffold.config import LabelConfig
from rscaffold.label import run_policy
from rscaffold.label.learned import (
    Example,
    FitSettings,
    LearnedLabeller,
    analyze,
    cmd_train_labeller,
    examples,
    fit_sklearn,
    from_sklearn,
    scripted_traces,
    strip_opening,
)
from rscaffold.schema import Step, Trace
from rscaffold.signals import Signal, load_lexicon

SHIPPED = Path(__file__).resolve().parent.parent / "rscaffold" / "label" / "labellers" / "default"


def test_analyze_reads_numbers_as_zero_and_marks_the_first_word():
    terms = analyze("So x = 12.")
    assert "f so" in terms and "w = 0" in terms and "c  so" in terms
    assert not any("12" in t for t in terms)


def test_strip_opening_removes_keyword_chains_and_markdown():
    lex = load_lexicon("paper")
    assert strip_opening("Well, I think D is a distractor.", lex) == "D is a distractor."
    assert strip_opening("**However**, the sum is 5.", lex) == "the sum is 5."
    assert strip_opening("*   Hmm, odd.", lex) == "Hmm, odd."
    assert strip_opening("Something else.", lex) == "Something else."


def _fit(n: int = 60) -> tuple[LearnedLabeller, object, object, list[str]]:
    lex = load_lexicon("paper")
    data = list(examples(scripted_traces(n, seed=3), lex, use_truth=False, held_share=0.2, source="testbed"))
    fit = [e for e in data if not e.held_out]
    vec, clf = fit_sklearn([e.text for e in fit], [int(e.signal) for e in fit], FitSettings(max_terms=3000))
    model = from_sklearn(vec, clf, "paper", FitSettings().features, {})
    return model, vec, clf, [e.text for e in data if e.held_out]


def test_numpy_path_equals_sklearn_on_held_out_texts():
    model, vec, clf, held = _fit()
    assert len(held) > 20
    expected = clf.predict_proba(vec.transform(held))
    np.testing.assert_allclose(model.predict_proba(held), expected, rtol=0, atol=1e-10)


def test_save_load_round_trip_without_pickle(tmp_path: Path):
    model, _, _, held = _fit()
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "labeller.json",
        "model.safetensors",
        "vocabulary.json",
    ]
    loaded = LearnedLabeller.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(held), model.predict_proba(held), atol=1e-5)
    assert loaded.classes == model.classes and loaded.lexicon == "paper"


def test_examples_take_judge_labels_and_truth_only_when_asked():
    steps = [
        Step(text="But no.", true_signal=Signal.REASONING),
        Step(text="Odd step.", signal=Signal.EXAMPLE, labelled_by="judge", confidence=0.8),
        Step(text="No keyword here.", true_signal=Signal.OPINION),
        Step(text="So the answer.", signal=Signal.RESPONSE, labelled_by="structure"),
    ]
    trace = Trace(question_id="q", thinking="x", steps=steps)
    lex = load_lexicon("paper")
    distant = list(examples([trace], lex, use_truth=False, held_share=0.0, source="s"))
    assert [(e.text, e.signal, e.supervision) for e in distant] == [
        ("no.", Signal.CONTRAST, "keyword"),
        ("Odd step.", Signal.EXAMPLE, "judge"),
    ]
    truth = list(examples([trace], lex, use_truth=True, held_share=0.0, source="s"))
    assert [e.signal for e in truth] == [Signal.REASONING, Signal.EXAMPLE, Signal.OPINION]
    assert all(isinstance(e, Example) and not e.held_out for e in truth)


def test_train_command_writes_a_labeller_with_held_out_accuracy(tmp_path: Path, capsys):
    args = argparse.Namespace(
        input=[],
        output=tmp_path / "m",
        lexicon="paper",
        testbed=40,
        seed=5,
        truth=False,
        held_out=0.25,
        max_terms=2000,
        c=4.0,
    )
    assert cmd_train_labeller(args) == 0
    info = json.loads((tmp_path / "m" / "labeller.json").read_text())
    assert info["training"]["steps"]["keyword"] > 100
    assert info["held_out"]["keyword"]["accuracy"] > 0.7
    assert "held out keyword" in capsys.readouterr().out


def test_shipped_labeller_is_small_and_safe():
    files = sorted(p.name for p in SHIPPED.iterdir())
    assert files == ["labeller.json", "model.safetensors", "vocabulary.json"]
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 5_000_000
    info = json.loads((SHIPPED / "labeller.json").read_text())
    assert info["training"]["truth"] is False  # distant supervision only
    assert set(info["held_out"]) >= {"keyword", "keyword/real", "keyword/testbed"}


def test_shipped_labeller_meets_the_testbed_targets_on_a_fresh_seed():
    """Issue 5: keywords + the shipped labeller >= 0.95 overall and >= 0.85 per signal (seed unseen in training)."""
    traces = scripted_traces(150, seed=4242)
    right, total = Counter(), Counter()
    for trace in run_policy(traces, LabelConfig()):
        for step in trace.steps[:-1]:
            total[step.true_signal] += 1
            right[step.true_signal] += step.signal is step.true_signal
    assert sum(right.values()) / sum(total.values()) >= 0.95
    for signal in total:
        assert right[signal] / total[signal] >= 0.85, signal


@pytest.mark.parametrize("name", ["default", str(SHIPPED)])
def test_load_by_name_or_folder(name: str):
    assert LearnedLabeller.load(name).classes == tuple(s for s in Signal if s is not Signal.RESPONSE)
