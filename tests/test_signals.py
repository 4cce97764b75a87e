from __future__ import annotations

import re

import pytest

from rscaffold.label import label_trace
from rscaffold.schema import Step, Trace
from rscaffold.signals import LexiconError, Signal, load_lexicon, parse_lexicon

PAPER_TABLE = {
    Signal.CONTRAST: "but, however, on the other hand, otherwise, nevertheless, nonetheless, in contrast, still, "
    "although, whereas",
    Signal.ADDITION: "also, moreover, additionally, furthermore, in addition",
    Signal.EXAMPLE: "for example, for instance",
    Signal.OPINION: "i think, i believe, i guess, in my opinion, maybe, it seems, perhaps, i recall, i remember",
    Signal.REASONING: "first, actually, in fact, let me, anyway, by the way, of course, i'll, i need, let's see, "
    "wait, ok, well, now",
    Signal.CONCLUSION: "so, then, after all, obviously, clearly, indeed, meanwhile, similarly, unless, as a result, "
    "therefore, thus, to conclude, in conclusion",
}
CASES = [(k, s) for s, row in PAPER_TABLE.items() for k in row.split(", ")]


def test_paper_lexicon_is_the_paper_table_exactly():
    lex = load_lexicon("paper")
    assert {k: v[0] for k, v in lex.entries.items()} == dict(CASES)


@pytest.mark.parametrize(("keyword", "signal"), CASES)
def test_every_paper_keyword_maps_to_its_signal(keyword, signal):
    lex = load_lexicon("paper")
    assert lex.match(f"{keyword.capitalize()}, the value is 3.") == (signal, keyword)
    assert lex.match(f"  **{keyword.upper()}** rest") == (signal, keyword)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Some apples are red.", None),  # "so" is not "some"
        ("Sofia has 3 apples.", None),
        ("Stillness.", None),
        ("Okay, let's go.", None),  # the paper's "ok" is a whole word
        ("> So the total is 5.", (Signal.CONCLUSION, "so")),
        ('"Wait, that is wrong."', (Signal.REASONING, "wait")),
        ("1. So we have", (Signal.CONCLUSION, "so")),
        ("I’ll add them.", (Signal.REASONING, "i'll")),
        ("Let's see, 3 + 4.", (Signal.REASONING, "let's see")),
        ("In  conclusion the answer", (Signal.CONCLUSION, "in conclusion")),
        ("The sum is 3, so 4.", None),  # only the start of the step counts
    ],
)
def test_matching_rules(text, expected):
    assert load_lexicon("paper").match(text) == expected


def test_longest_keyword_wins():
    lex = parse_lexicon("in\treasoning\nin fact\tcontrast\nin fact it is\taddition\n", "t")
    assert lex.match("In fact it is so") == (Signal.ADDITION, "in fact it is")
    assert lex.match("In fact, no") == (Signal.CONTRAST, "in fact")
    assert lex.match("In the end") == (Signal.REASONING, "in")


def test_extended_lexicon_extends_the_paper_table():
    paper, extended = load_lexicon("paper"), load_lexicon("extended")
    assert paper.entries.items() <= extended.entries.items()
    assert extended.match("Alternatively, maybe") == (Signal.CONTRAST, "alternatively")
    assert extended.match("Okay, so") == (Signal.REASONING, "okay")
    assert all(reason for _, reason in extended.entries.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("so\tnonsense\n", "t:1: field 'signal'"),
        ("just-a-word\n", "t:1: expected 'keyword<TAB>signal[<TAB>reason]': the signal column is missing"),
        ("so\tresponse\n", "t:1: Response"),
        ("but\tcontrast\n \tcontrast\n", "t:2: empty keyword"),
        ("but\tcontrast\nbut\taddition\n", "t:2: keyword 'but' already maps to contrast"),
        ("# extends: nosuch\n", "t:1: # extends: lexicon 'nosuch': not one of paper, extended"),
        ("# only comments\n", "t: no keywords"),
    ],
)
def test_bad_lexicon_lines(text, message):
    with pytest.raises(LexiconError, match=re.escape(message)):
        parse_lexicon(text, "t")


def test_bad_lexicon_files_name_the_file_and_line(tmp_path):
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    a.write_text(f"but\tcontrast\n# extends: {b}\n")
    b.write_text(f"# extends: {a}\nso\tconclusion\n")
    with pytest.raises(LexiconError, match=re.escape(f"{a}:2: # extends: {b}:1: # extends: {a}: '# extends:' loops")):
        load_lexicon(str(a))
    a.write_bytes(b"but\tcontrast\nso\xff\tconclusion\n")
    with pytest.raises(LexiconError, match=re.escape(f"{a}:2: not valid UTF-8 (byte 0xff)")):
        load_lexicon(str(a))
    with pytest.raises(LexiconError, match="not a readable file"):
        load_lexicon(str(tmp_path))


def test_a_lexicon_file_may_start_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.tsv"
    path.write_bytes("\ufeffbut\tcontrast\n".encode())
    assert load_lexicon(str(path)).match("But no.") == (Signal.CONTRAST, "but")


def test_label_trace_keeps_answer_step_and_truth():
    steps = [
        Step(text="So 3.", sep="\n\n", signal=Signal.OPINION, labelled_by="truth", true_signal=Signal.CONCLUSION),
        Step(text="Three it is.", signal=Signal.CONCLUSION, labelled_by="truth", true_signal=Signal.CONCLUSION),
        Step(text="3", signal=Signal.RESPONSE, labelled_by="structure"),
    ]
    out = label_trace(Trace(question_id="q", thinking="So 3.\n\nThree it is.", steps=steps), load_lexicon("paper"))
    assert [(s.signal, s.labelled_by) for s in out.steps] == [
        (Signal.CONCLUSION, "keyword"),
        (None, None),
        (Signal.RESPONSE, "structure"),
    ]
    assert [s.true_signal for s in out.steps[:2]] == [Signal.CONCLUSION, Signal.CONCLUSION]


def test_signal_parse():
    assert Signal.parse("Conclusion and Summary") is Signal.CONCLUSION
    assert Signal.parse(2) is Signal.EXAMPLE
    with pytest.raises(ValueError, match="unknown signal"):
        Signal.parse("nope")


def test_swapped_signals_replace_one_seeded_step_per_question():
    from rscaffold.kvbatch import Row
    from rscaffold.schema import Question, Step
    from rscaffold.signal_sources import SwappedSignals

    seq = [Signal.REASONING, Signal.CONCLUSION, Signal.CONTRAST, Signal.REASONING]
    source = SwappedSignals({"a": seq, "b": seq, "empty": []}, seed=3)
    assert set(source.swaps) == {"a", "b"}  # nothing to swap in an empty sequence
    for qid, (t, new, was) in source.swaps.items():
        assert was is seq[t] and new is not was and new is not Signal.RESPONSE
        chosen = []
        for n in range(len(seq)):
            row = Row(Question(id=qid, text="q"), [1], steps=[Step(text="x")] * n)
            chosen.append(source.choose([row], None)[0][0])
        assert chosen == [new if i == t else s for i, s in enumerate(seq)]
    assert SwappedSignals({"a": seq}, seed=3).swaps["a"] == source.swaps["a"]  # seeded by question, not order
