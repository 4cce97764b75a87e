"""The scripted teacher: signal mix, keyword coverage, detours and wrong answers, lossless steps."""

from __future__ import annotations

import re
from collections import Counter

import pydantic
import pytest

from rscaffold.config import ScriptedConfig, TestbedConfig
from rscaffold.schema import InputError, Question, Trace
from rscaffold.signals import Signal, load_lexicon
from rscaffold.testbed.graph import apply
from rscaffold.testbed.problems import make_splits
from rscaffold.testbed.teacher import ScriptedTeacher

CFG = ScriptedConfig()
# "5 + 3 = 8", "5 + 3 is 8", "5 + 3 gives 8": every equation a step writes.
EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) (?:=|is|gives) (\d+)")
OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    cfg = TestbedConfig(
        train=1500,
        test_id=10,
        test_ood=100,
        test_surface=10,
        perturbed_groups=1,
        perturbed_variants=1,
    )
    splits = make_splits(cfg, seed=11)
    return splits["train"] + splits["test_ood"]


@pytest.fixture(scope="module")
def traces(questions) -> list[Trace]:
    return list(ScriptedTeacher(CFG, seed=5).generate(questions))


def thinking_steps(traces):
    return [s for t in traces for s in t.steps[:-1]]


def false_equations(text: str) -> list[str]:
    return [
        m.group(0)
        for m in EQUATION.finditer(text)
        if apply(OPS[m.group(2)], int(m.group(1)), int(m.group(3))) != int(m.group(4))
    ]


def test_all_seven_signals_occur(traces):
    seen = Counter(s.true_signal for t in traces for s in t.steps)
    assert set(seen) == set(Signal)
    assert all(t.steps[-1].true_signal is Signal.RESPONSE for t in traces)


def test_a_quarter_of_steps_have_no_paper_keyword(traces):
    lex = load_lexicon("paper")
    steps = thinking_steps(traces)
    matches = [lex.match(s.text) for s in steps]
    free = sum(m is None for m in matches) / len(steps)
    assert abs(free - CFG.keyword_free_share) < 0.03
    # Steps that do open with a keyword mostly open with one of their own signal, as on real traces.
    own = [m[0] is s.true_signal for s, m in zip(steps, matches, strict=True) if m is not None]
    assert 0.85 < sum(own) / len(own) < 0.99


def test_detour_and_wrong_shares(traces):
    detour = sum(t.metadata["detour"] for t in traces) / len(traces)
    wrong = sum(t.metadata["wrong"] for t in traces) / len(traces)
    assert abs(detour - CFG.detour_share) < 0.04
    assert abs(wrong - CFG.wrong_share) < 0.03


def test_final_answers_match_gold_except_wrong_traces(traces):
    for t in traces:
        assert (t.final_answer == t.gold) is not t.metadata["wrong"]
        assert t.answer_text.endswith(f"###Answer: \\boxed{{{t.final_answer}}}")
        assert t.metadata["cot_solution"].endswith(f"###Answer: \\boxed{{{t.gold}}}")
        assert not false_equations(t.metadata["cot_solution"])


def test_equations_are_true_unless_a_slip_is_written(traces):
    for t in traces:
        wrong = false_equations(t.thinking)
        if not t.metadata["detour"] and not t.metadata["wrong"]:
            assert not wrong, (t.question_id, wrong)
        if t.metadata["detour"] and not t.metadata["wrong"]:
            assert len(wrong) == 1  # the detour's slip, then a Contrast step corrects it
            detour = next(i for i, s in enumerate(t.steps) if wrong[0] in s.text)
            assert t.steps[detour + 1].true_signal is Signal.CONTRAST


def test_steps_are_lossless_and_carry_true_signals(traces):
    for t in traces:
        *thinking, answer = t.steps
        assert "".join(s.text + s.sep for s in thinking) == t.thinking
        assert [s.sep for s in thinking] == ["\n\n"] * (len(thinking) - 1) + [""]
        assert all("\n" not in s.text and s.text == s.text.strip() for s in thinking)
        assert all(s.signal is s.true_signal and s.labelled_by == "truth" for s in t.steps)
        assert (answer.text, answer.signal) == (t.answer_text, Signal.RESPONSE)
        assert (t.teacher, t.question) == ("scripted", t.question)


def test_segmentation_reproduces_the_steps(traces):
    segment = pytest.importorskip("rscaffold.segment")
    for t in traces[:300]:
        assert [s.text for s in segment.segment_text(t.thinking)] == [s.text for s in t.steps[:-1]]


def test_deterministic_per_question_whatever_the_order(questions, traces):
    again = list(ScriptedTeacher(CFG, seed=5).generate(reversed(questions[:50])))
    assert [t.model_dump() for t in reversed(again)] == [t.model_dump() for t in traces[:50]]
    other = list(ScriptedTeacher(CFG, seed=6).generate(questions[:50]))
    assert [t.thinking for t in other] != [t.thinking for t in traces[:50]]


def test_phrasing_varies_within_each_signal(traces):
    openings: dict[Signal, set[str]] = {}
    for s in thinking_steps(traces):
        openings.setdefault(s.true_signal, set()).add(" ".join(s.text.split()[:2]))
    assert all(len(v) >= 6 for v in openings.values()), {k.key: len(v) for k, v in openings.items()}


def test_restating_facts_is_a_knob(questions):
    q = next(q for q in questions if q.metadata["ops"] >= 2)
    derived = [d for d in q.metadata["quantities"] if d["needed"] and d["op"] != "given"]
    facts = [d["fact"].rstrip(".")[1:] for d in derived]
    plain = ScriptedTeacher(ScriptedConfig(restate_facts=False)).trace(q).thinking
    restated = ScriptedTeacher(ScriptedConfig(restate_facts=True)).trace(q).thinking
    assert all(f in restated for f in facts)
    assert not any(f in plain for f in facts)


def test_shares_are_configurable(questions):
    cfg = ScriptedConfig(keyword_free_share=0, other_keyword_share=0, detour_share=1, wrong_share=0)
    traces = list(ScriptedTeacher(cfg).generate(questions[:200]))
    lex = load_lexicon("paper")
    assert all(lex.match(s.text)[0] is s.true_signal for s in thinking_steps(traces))
    assert all(t.metadata["detour"] and t.final_answer == t.gold for t in traces)


def test_rejects_other_questions_and_bad_config():
    with pytest.raises(InputError, match="testbed questions"):
        list(ScriptedTeacher(CFG).generate([Question(id="g1", text="2+2?", gold="4", task="gsm8k")]))
    with pytest.raises(pydantic.ValidationError):
        ScriptedConfig(keyword_free_share=0.9, other_keyword_share=0.2)
    with pytest.raises(pydantic.ValidationError):
        ScriptedConfig(detuor_share=0.1)
    for name, field in ScriptedConfig.model_fields.items():
        assert field.description, name
