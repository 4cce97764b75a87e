"""The labelling policy: keywords, then a judge and/or the learned labeller, with thresholds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import pytest
from pydantic import ValidationError

from rscaffold.cli import main
from rscaffold.config import LabelConfig
from rscaffold.label import label_keywords, label_trace, run_policy
from rscaffold.schema import Step, Trace, write_jsonl
from rscaffold.signals import Signal, load_lexicon

TEXTS = ["But the sum is 5.", "Alternatively, use a table.", "The sum is 7."]


def _trace() -> Trace:
    steps = [Step(text=t, sep="\n\n") for t in TEXTS]
    answer = Step(text="7", signal=Signal.RESPONSE, labelled_by="structure")
    return Trace(question_id="q", thinking="\n\n".join(TEXTS), steps=[*steps, answer])


class FakeLearned:
    """Says ``signal`` with probability ``p`` for every step it is asked about; records the texts it read
    and, per prediction, the step's index and the previous step's signal it was given."""

    def __init__(self, signal: Signal, p: float):
        self.signal, self.p, self.seen, self.asked = signal, p, [], []

    def read(self, texts: list[str]) -> FakeLearned:
        self.seen.append(list(texts))
        return self

    def predict(self, i: int, previous: Signal | None) -> tuple[Signal, float]:
        self.asked.append((i, previous))
        return self.signal, self.p


def _label(cfg: LabelConfig, **kw) -> Trace:
    return next(iter(run_policy([_trace()], cfg, **kw)))


def test_keywords_only_is_stage_one():
    out = _label(LabelConfig(learned=None))
    assert out == label_trace(_trace(), load_lexicon("paper"))
    assert [s.labelled_by for s in out.steps] == ["keyword", None, None, "structure"]
    assert out.steps[0].confidence == 1.0 and out.steps[1].confidence is None
    assert list(label_keywords([_trace()], load_lexicon("paper"))) == [out]


def test_learned_labels_the_rest_and_records_confidence():
    counts: Counter[str] = Counter()
    cfg = LabelConfig(learned=None, learned_overrule=0.9)
    out = next(run_policy([_trace()], cfg, learned=FakeLearned(Signal.OPINION, 0.6), counts=counts))
    assert [(s.signal, s.labelled_by, s.confidence) for s in out.steps[1:3]] == [(Signal.OPINION, "learned", 0.6)] * 2
    assert out.steps[0].signal is Signal.CONTRAST  # 0.6 < learned_overrule
    assert out.steps[3].signal is Signal.RESPONSE
    assert counts == Counter({"keyword": 1, "learned": 2})


def test_learned_reads_left_to_right_with_the_labels_given_so_far():
    learned = FakeLearned(Signal.OPINION, 0.6)
    _label(LabelConfig(learned=None, learned_overrule=None), learned=learned)
    assert learned.asked == [(1, Signal.CONTRAST), (2, Signal.OPINION)]  # the keyword's, then its own label
    learned = FakeLearned(Signal.OPINION, 0.95)
    _label(LabelConfig(learned=None, learned_overrule=0.9), learned=learned)
    assert learned.asked == [(0, None), (1, Signal.OPINION), (2, Signal.OPINION)]  # step 0 overruled first


def test_shipped_labeller_reads_the_previous_step():
    """The same step after a computation and after a stated result: the default policy labels it by its context."""
    then = "Now I multiply 5 by 4 to get the area."
    after_computing = _label_texts(["Let me add them: 2 + 3 = 5.", "Hmm.", then])
    after_result = _label_texts(["Therefore, the total is 5.", "Hmm.", then])
    assert [s.signal for s in after_computing.steps[:2]] == [Signal.REASONING, Signal.REASONING]
    assert [s.signal for s in after_result.steps[:2]] == [Signal.CONCLUSION, Signal.CONCLUSION]
    assert after_result.steps[1].labelled_by == after_computing.steps[1].labelled_by == "learned"


def _label_texts(texts: list[str]) -> Trace:
    steps = [Step(text=t, sep="\n\n") for t in texts]
    trace = Trace(question_id="q", thinking="\n\n".join(texts), steps=steps)
    return next(iter(run_policy([trace], LabelConfig())))


def test_learned_min_confidence_leaves_unsure_steps_unlabelled():
    out = _label(LabelConfig(learned=None, learned_min_confidence=0.7), learned=FakeLearned(Signal.OPINION, 0.6))
    assert [s.signal for s in out.steps[1:3]] == [None, None]


def test_learned_overrules_a_keyword_only_when_sure():
    counts: Counter[str] = Counter()
    cfg = LabelConfig(learned=None, learned_overrule=0.9)
    out = next(run_policy([_trace()], cfg, learned=FakeLearned(Signal.REASONING, 0.95), counts=counts))
    assert (out.steps[0].signal, out.steps[0].labelled_by, out.steps[0].confidence) == (
        Signal.REASONING,
        "learned",
        0.95,
    )
    assert counts["overruled_keyword"] == 1
    never = _label(LabelConfig(learned=None, learned_overrule=None), learned=FakeLearned(Signal.REASONING, 0.99))
    assert never.steps[0].labelled_by == "keyword"


def fake_judge(traces: Iterable[Trace]) -> Iterator[Trace]:
    """Labels step 1 Contrast (sure), step 2 Example (unsure) and the keyword step Example without a
    confidence (the project's judge reports none), as the judge stage would."""
    for t in traces:
        steps = list(t.steps)
        steps[0] = steps[0].model_copy(update={"signal": Signal.EXAMPLE, "labelled_by": "judge", "confidence": None})
        steps[1] = steps[1].model_copy(update={"signal": Signal.CONTRAST, "labelled_by": "judge", "confidence": 0.9})
        steps[2] = steps[2].model_copy(update={"signal": Signal.EXAMPLE, "labelled_by": "judge", "confidence": 0.3})
        yield t.model_copy(update={"steps": steps})


def test_judge_then_learned_with_judge_threshold():
    cfg = LabelConfig(judge=True, judge_min_confidence=0.5, learned=None, learned_overrule=None)
    learned = FakeLearned(Signal.CONCLUSION, 0.8)
    out = _label(cfg, judge=fake_judge, learned=learned)
    assert [(s.signal, s.labelled_by) for s in out.steps[:3]] == [
        (Signal.EXAMPLE, "judge"),  # the judge overruled the keyword; no confidence reported, so kept
        (Signal.CONTRAST, "judge"),
        (Signal.CONCLUSION, "learned"),  # the unsure judge label was dropped, the learned labeller took it
    ]
    assert learned.seen == [TEXTS] and learned.asked == [(2, Signal.CONTRAST)]  # after the judge's label


def test_judge_on_needs_a_judge():
    with pytest.raises(ValueError, match="judge"):
        _label(LabelConfig(judge=True, learned=None))


def test_policy_streams_one_trace_at_a_time():
    def endless() -> Iterator[Trace]:
        yield _trace()
        raise AssertionError("read ahead")

    assert next(run_policy(endless(), LabelConfig(learned=None))).question_id == "q"


def test_default_policy_labels_every_thinking_step_with_the_shipped_labeller():
    out = _label(LabelConfig())
    assert all(s.signal is not None and s.confidence is not None for s in out.steps)
    assert [s.labelled_by for s in out.steps][1:] == ["learned", "learned", "structure"]


def test_config_checks_its_values(tmp_path):
    assert LabelConfig(learned="none").learned is None
    with pytest.raises(ValidationError, match="lexicon"):
        LabelConfig(lexicon="nope")
    with pytest.raises(ValidationError, match=r"labeller\.json"):
        LabelConfig(learned=str(tmp_path))
    with pytest.raises(ValidationError, match="extra"):
        LabelConfig(lexcon="paper")
    assert all(f.description for f in LabelConfig.model_fields.values())


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("but\tcontrast\nso\tnonsense\n", ":2: field 'signal': unknown signal 'nonsense'"),
        (
            "but\tcontrast\nso conclusion\n",
            ":2: expected 'keyword<TAB>signal[<TAB>reason]': the signal column is missing",
        ),
        ("# version: 1\n\tcontrast\n", ":2: empty keyword"),
    ],
)
def test_label_cli_names_the_file_and_line_of_a_malformed_lexicon(tmp_path, capsys, lines, message):
    lexicon, traces, out = tmp_path / "my.tsv", tmp_path / "t.jsonl", tmp_path / "o.jsonl"
    lexicon.write_text(lines)
    write_jsonl(traces, [_trace()])
    assert main(["label", "--input", str(traces), "--output", str(out), "--lexicon", str(lexicon)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rscaffold: error: ") and err.count("\n") == 1, err
    assert f"{lexicon}{message}" in err
    assert not out.exists()


def test_label_cli_refuses_unsegmented_traces(tmp_path, capsys):
    traces, out = tmp_path / "traces.jsonl", tmp_path / "labelled.jsonl"
    write_jsonl(traces, [Trace(question_id=f"q{i}", thinking="But 1.\n\nSo 2.", answer_text="2") for i in range(3)])
    assert main(["label", "--input", str(traces), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"rscaffold: error: {traces}: no trace has steps; "
        f"run `rscaffold segment --input {traces} --output SEGMENTED` first\n"
    )
    assert not out.exists()
    segmented = tmp_path / "segmented.jsonl"
    assert main(["segment", "--input", str(traces), "--output", str(segmented)]) == 0
    assert main(["label", "--input", str(segmented), "--output", str(out), "--policy", "keywords"]) == 0
    assert out.exists()
