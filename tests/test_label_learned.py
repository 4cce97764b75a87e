"""The learned labellers: features, keyword stripping, numpy == scikit-learn (distant and context kinds),
files without pickle, reading in context, determinism, the shipped ones on the testbed and on judged steps."""

from __future__ import annotations

import argparse
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rscaffold.config import ImportConfig, LabelConfig
from rscaffold.import_traces import read_traces
from rscaffold.label import run_policy
from rscaffold.label.fit import (
    Example,
    FitSettings,
    Sequence,
    context_matrix,
    design,
    examples,
    fit_context,
    fit_context_sklearn,
    fit_sklearn,
    from_context_sklearn,
    from_sklearn,
    judged_sequences,
    scripted_traces,
)
from rscaffold.label.learned import CONTEXT_FORMAT, START, Context, LearnedLabeller, analyze, strip_opening
from rscaffold.label.quality import JUDGED, against_reference, reference_labels
from rscaffold.label.training import OVERRULES, choose, cmd_train_labeller, shortfall, train_context
from rscaffold.schema import Step, Trace, write_jsonl
from rscaffold.segment import segment_trace
from rscaffold.signals import Signal, load_lexicon

LABELLERS = Path(__file__).resolve().parent.parent / "rscaffold" / "label" / "labellers"
SHIPPED = LABELLERS / "default"
C, R, K = Signal.CONTRAST, Signal.REASONING, Signal.CONCLUSION


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


# ------------------------------------------------------------------ distant kind


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
    assert loaded.classes == model.classes and loaded.lexicon == "paper" and loaded.context is None


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


def _train_args(tmp_path: Path, **kw) -> argparse.Namespace:
    base = dict(input=[], output=tmp_path / "m", judged=None, lexicon="paper", testbed=40, seed=5, truth=False)
    base |= dict(held_out=0.25, max_terms=2000, c=[4.0], class_weight_power=[0.5], distant_weight=[1.0])
    base |= dict(contrast_weight=[1.0], unsure_weight=[1.0])
    return argparse.Namespace(**(base | dict(overrule=[0.5], folds=2) | kw))


def test_train_command_writes_a_distant_labeller_with_held_out_accuracy(tmp_path: Path, capsys):
    assert cmd_train_labeller(_train_args(tmp_path)) == 0
    info = json.loads((tmp_path / "m" / "labeller.json").read_text())
    assert info["training"]["steps"]["keyword"] > 100
    assert info["held_out"]["keyword"]["accuracy"] > 0.7
    assert "held out keyword" in capsys.readouterr().out


# ------------------------------------------------------------------ context kind

AFTER = {"So x = 3.": K, "Let me add them.": R}
"""In the constructed traces "Fine." continues what the previous step did: a conclusion or analysis."""


def _constructed(n: int = 24) -> list[Sequence]:
    out = []
    for k in range(n):
        first = list(AFTER)[k % 2]
        texts = ("Now the next part.", first, "Fine.", "But that is wrong." if k % 3 else "Then y = 2.")
        signals = (R, AFTER[first], AFTER[first], C if k % 3 else R)
        out.append(Sequence(f"t{k}", texts, signals, "judge", "made"))
    return out


def _small(**kw) -> FitSettings:
    return FitSettings(min_df=1, c=10.0, **kw)


def test_context_decides_the_label_of_the_same_step_text():
    model = fit_context(_constructed(), _small())
    labels = {first: model.predict(["Now the next part.", first, "Fine."])[2][0] for first in AFTER}
    assert labels == AFTER
    reader = model.read(["Now the next part.", "Hmm.", "Fine."])
    assert reader.predict(2, K)[0] is K and reader.predict(2, R)[0] is R  # the previous signal alone decides


NEXT = Context(next_chars=200)
"""A context labeller that also reads the opening of the next step."""


def test_the_next_step_decides_the_label_of_the_same_step_text():
    leads = {"Then check it.": K, "Then add more.": R}
    data = [
        Sequence(f"t{k}", ("Fine.", list(leads)[k % 2]), (leads[list(leads)[k % 2]], R), "judge", "made")
        for k in range(20)
    ]
    model = fit_context(data, _small(context=NEXT))
    assert {lead: model.predict(["Fine.", lead])[0][0] for lead in leads} == leads
    assert model.terms(["Fine."], 0)["flags"][-1] == "next opens end"
    without = fit_context(data, _small())
    assert len({without.predict(["Fine.", lead])[0][0] for lead in leads}) == 1  # it cannot tell them apart


@pytest.mark.parametrize("context", [Context(), NEXT], ids=["previous", "previous+next"])
def test_context_parity_numpy_equals_sklearn_given_the_previous_signals(context: Context):
    data = _constructed()
    vecs, clf = fit_context_sklearn(data, _small(context=context))
    model = from_context_sklearn(vecs, clf, _small(context=context))
    docs, _, _ = design(data[:3], _small(context=context))
    expected = clf.predict_proba(context_matrix(vecs, docs, context))
    got = []
    for seq in data[:3]:
        reader = model.read(list(seq.texts))
        got += [reader.proba(i, START if i == 0 else seq.signals[i - 1]) for i in range(len(seq.texts))]
    np.testing.assert_allclose(np.stack(got), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("context", [Context(), NEXT], ids=["previous", "previous+next"])
def test_context_labeller_files_are_json_and_safetensors_and_load_without_pickle(
    tmp_path: Path, monkeypatch, context: Context
):
    model = fit_context(_constructed(), _small(context=context))
    model.save(tmp_path / "m")
    assert sorted(p.suffix for p in (tmp_path / "m").iterdir()) == [".json", ".json", ".safetensors"]
    assert json.loads((tmp_path / "m" / "labeller.json").read_text())["format"] == CONTEXT_FORMAT

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    loaded = LearnedLabeller.load(tmp_path / "m")
    texts = ["Now the next part.", "So x = 3.", "Fine."]
    np.testing.assert_allclose(loaded.read(texts).base, model.read(texts).base, atol=1e-5)
    got, want = loaded.predict(texts), model.predict(texts)
    assert [s for s, _ in got] == [s for s, _ in want] == [R, K, K]
    np.testing.assert_allclose([p for _, p in got], [p for _, p in want], atol=1e-5)


def test_fitting_is_deterministic():
    first, second = fit_context(_constructed(), _small()), fit_context(_constructed(), _small())
    assert np.array_equal(first.weights, second.weights) and np.array_equal(first.bias, second.bias)
    assert {k: b.vocabulary for k, b in first.blocks.items()} == {k: b.vocabulary for k, b in second.blocks.items()}


def _scores(agreement: float, contrast: float) -> dict:
    return {"accuracy": agreement, "by_signal": {"contrast": {"steps": 10, "accuracy": contrast}}}


def test_choose_takes_the_candidate_and_overrule_together():
    """Candidate 0 is best at overrule 0.5, candidate 1 at 0.9: the pair nearest the targets wins, not the
    best candidate at a fixed overrule."""
    table = [
        {"by_overrule": {"0.5": _scores(0.84, 0.75), "0.9": _scores(0.80, 0.50)}},
        {"by_overrule": {"0.5": _scores(0.80, 0.60), "0.9": _scores(0.86, 0.80)}},
    ]
    assert choose(table, [0.5, 0.9]) == (1, 0.9)
    assert choose(table, [0.5]) == (0, 0.5)
    assert shortfall(_scores(0.87, 0.8)) == 0.0 < shortfall(_scores(0.86, 0.8)) < shortfall(_scores(0.86, 0.7))


def test_train_context_chooses_by_cross_validation_and_scores_the_held_out_split_at_its_choice():
    data = _constructed(30)
    judged = [Sequence(q.group, q.texts, q.signals, q.supervision, q.source, k >= 24) for k, q in enumerate(data)]
    model = train_context(judged, [], [_small(), _small(contrast_weight=3.0)], [None, 0.5], folds=3)
    cv = model.meta["cross_validation"]
    assert (cv["chosen"], cv["overrule"]) == choose(cv["candidates"], [None, 0.5])
    assert model.meta["held_out_overrule"] == cv["overrule"] and model.meta["held_out"]["judge"]["steps"] == 6 * 4
    assert model.meta["training"]["judged_traces"] == 24


def test_judged_sequences_are_whole_traces_split_by_trace():
    judged = judged_sequences(JUDGED)
    assert sum(len(q.texts) for q in judged) == 14171 and len(judged) == 732
    assert sum(len(q.texts) for q in judged if q.held_out) == 3186
    assert all(None not in q.signals and q.supervision == "judge" for q in judged)


def test_judged_sequences_name_a_missing_step(tmp_path: Path):
    rows = [json.loads(line) for line in JUDGED.read_text().splitlines()[:3]]
    path = tmp_path / "steps.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [rows[0], rows[2]]) + "\n")
    with pytest.raises(Exception, match=r"steps\.jsonl:2: field 'index': expected 1"):
        judged_sequences(path)


# ------------------------------------------------------------------ the shipped labellers


def test_shipped_labellers_are_small_safe_and_trained_on_the_judged_train_split():
    for folder in (SHIPPED, LABELLERS / "distant"):
        assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".json", ".safetensors"]
        assert sum(p.stat().st_size for p in folder.iterdir()) < 8_000_000  # a few MB: small enough to ship
    info = json.loads((SHIPPED / "labeller.json").read_text())
    assert info["format"] == CONTEXT_FORMAT
    assert info["training"]["judged_steps"] == 14171 - 3186  # the held-out split never trained on
    assert info["cross_validation"]["folds"] >= 2 and "contrast" in info["held_out"]["judge"]["by_signal"]


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


def test_default_overrule_is_the_one_the_shipped_labellers_cross_validation_chose():
    cv = json.loads((SHIPPED / "labeller.json").read_text())["cross_validation"]
    chosen, overrule = choose(cv["candidates"], list(OVERRULES))
    assert (chosen, overrule) == (cv["chosen"], cv["overrule"]) and overrule == LabelConfig().learned_overrule


@pytest.mark.parametrize("name", ["default", "distant", str(SHIPPED)])
def test_load_by_name_or_folder(name: str):
    assert LabelConfig(learned=name).learned == name
    with pytest.raises(ValueError, match="expected default, distant, null or a folder"):
        LabelConfig(learned=name + "-missing")
    assert LearnedLabeller.load(name).classes == tuple(s for s in Signal if s is not Signal.RESPONSE)


FLOORS = {0.0: (0.797, 0.790)}
"""Agreement and Contrast recall floors of the default policy on the held-out judged steps (3,186 steps,
majority of three judge runs), by its learned_overrule: measured by bench/label_agreement.py (0.817 and
0.840 at 0), less 0.02 and 0.05."""


@pytest.mark.slow  # labels 3,186 steps of 164 traces: about 9 s
def test_default_policy_floor_on_held_out_judged_steps(shared_traces: Path, tmp_path: Path):
    cfg = LabelConfig()
    agreement, contrast = FLOORS[cfg.learned_overrule]  # another default: measure it and add its floors
    reference = reference_labels(JUDGED, held_out=True)
    wanted = {(t, q) for t, q, _ in reference}
    traces = []
    for path in sorted(shared_traces.glob("*/traces.jsonl")):
        traces += [segment_trace(t) for t in read_traces(path, ImportConfig()) if (t.teacher, t.question_id) in wanted]
    assert len(traces) == 164
    write_jsonl(tmp_path / "labelled.jsonl", run_policy(traces, cfg))
    a = against_reference(tmp_path / "labelled.jsonl", reference)
    assert a["steps"] == 3186
    assert a["agreement"] >= agreement and a["recall"]["contrast"] >= contrast, (a["agreement"], a["recall"])
