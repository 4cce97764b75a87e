from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rscaffold.schema import Step, Trace
from rscaffold.segment import segment_text, segment_trace
from rscaffold.signals import Signal


def texts(steps):
    return [s.text for s in steps]


def joined(steps):
    return "".join(s.text + s.sep for s in steps)


def test_splits_on_blank_lines():
    assert texts(segment_text("Okay.\n\nSo 2.\n\n\n\nWait.")) == ["Okay.", "So 2.", "Wait."]


def test_crlf_and_whitespace_only_fragments():
    text = "a\r\n\r\nb  \n \t \n\n   \n\nc"
    steps = segment_text(text)
    assert texts(steps) == ["a", "b", "c"]
    assert joined(steps) == text


def test_single_newline_does_not_split():
    assert texts(segment_text("line one\nline two")) == ["line one\nline two"]


def test_code_and_display_blocks_are_not_split():
    text = (
        "Code:\n\n```python\nx = 1\n\ny = 2\n```\n\nMath $$a\n\nb$$ end\n\n"
        "\\[x\n\ny\\]\n\n\\begin{align}p\n\nq\\end{align}"
    )
    steps = segment_text(text)
    assert texts(steps) == [
        "Code:",
        "```python\nx = 1\n\ny = 2\n```",
        "Math $$a\n\nb$$ end",
        "\\[x\n\ny\\]",
        "\\begin{align}p\n\nq\\end{align}",
    ]
    assert joined(steps) == text


def test_unclosed_fence_does_not_swallow_the_rest():
    assert texts(segment_text("```\nopen\n\nnext\n\nlast")) == ["```\nopen", "next", "last"]


def test_leading_blank_lines_stay_with_first_step():
    steps = segment_text("\n\n  First.\n\nSecond.\n")
    assert texts(steps) == ["\n\n  First.", "Second.\n"]


@given(
    st.lists(
        st.sampled_from(["a", "b c", "\n", "\n\n", "\r\n", " ", "\t", "```", "$$", "\\[", "\\]", "x\ny"]), max_size=40
    )
)
def test_segmentation_is_lossless(parts):
    text = "".join(parts)
    steps = segment_text(text)
    if text.strip():
        assert joined(steps) == text
    else:
        assert steps == []
    assert all(s.text.strip() for s in steps)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_segmentation_is_lossless_on_any_text(text):
    steps = segment_text(text)
    assert joined(steps) == text or (not text.strip() and steps == [])


def test_answer_becomes_the_final_step():
    trace = segment_trace(Trace(question_id="q", thinking="Hmm.\n\nSo 4.", answer_text="\n\n###Answer: \\boxed{4}"))
    assert texts(trace.steps) == ["Hmm.", "So 4.", "\n\n###Answer: \\boxed{4}"]
    last = trace.steps[-1]
    assert (last.signal, last.labelled_by) == (Signal.RESPONSE, "structure")


def test_true_signals_survive_resegmentation():
    steps = [
        Step(text="So 1.", sep="\n\n", signal=Signal.CONCLUSION, labelled_by="truth", true_signal=Signal.CONCLUSION),
        Step(text="Hmm.", signal=Signal.REASONING, labelled_by="truth", true_signal=Signal.REASONING),
    ]
    trace = segment_trace(Trace(question_id="q", thinking="So 1.\n\nHmm.", answer_text="1", steps=steps))
    assert [s.true_signal for s in trace.steps] == [Signal.CONCLUSION, Signal.REASONING, Signal.RESPONSE]
