"""Answer extraction: GSM8K outputs in many styles against lm-evaluation-harness's rules, MATH through
math-verify, choice letters and yes/no."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rscaffold.answers import EXTRACTIONS, INVALID, last_boxed, math_equal, numbers_equal, to_number
from tests.conftest import SHARED

NUMBER = EXTRACTIONS["number"]

# (model output, gold, strict, flexible). Expected values follow the harness, file by file:
#   strict `#### N`: lm_eval/tasks/gsm8k/gsm8k.yaml (v3.0) strict-match `#### (\-?[0-9\.\,]+)`, first match;
#   strict `The answer is N`: gsm8k-cot.yaml strict-match `The answer is (\-?[0-9\.\,]+).`, first match;
#   strict `\boxed{}`: our prompt's format (METHOD.md section 3), last box, as minerva_math reads it;
#   flexible: gsm8k.yaml flexible-extract `(-?[$0-9.,]{2,})|(-?[0-9]+)`, group_select -1 (last match).
STYLES = [
    ("Janet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18.\n#### 18", "18", "18", "18"),
    ("She makes 9 * 2 = 18 dollars.\n#### $18", "18", INVALID, "$18"),
    ("#### 18.00", "18", "18.00", "18.00"),
    ("The profit is 70,000.\n#### 70,000", "70000", "70,000", "70,000"),
    ("So 9 * 2 = 18. The answer is 18.", "18", "18", "18."),
    ("So 9 * 2 = 18. The answer is 18", "18", "1", "18"),  # the harness's cot regex wants one more character
    ("The answer is $18.", "18", INVALID, "$18."),
    ("9 * 2 = 18, so \\boxed{18}", "18", "18", "18"),
    ("F = 2 * 8 = 16.\n###Answer: \\boxed{16}", "16", "16", "16"),
    ("\\boxed{\\$18}", "18", "\\$18", "$18"),
    ("So she makes 18 dollars every day.", "18", INVALID, "18"),
    ("She makes $18 every day.", "18", INVALID, "$18"),
    ("16 - 3 - 4 = 9, 9 * 2 = 18", "18", INVALID, "18"),
    ("Answer: 18", "18", INVALID, "18"),
    ("The total is 18 dollars...", "18", INVALID, "..."),  # an ellipsis matches [$0-9.,]{2,}
    ("It goes down by 5, so the answer is -5.", "-5", INVALID, "-5."),
    ("#### 18\n\nThe answer is 20.", "18", "18", "20."),
    ("He needs 3.5 hours a day, so 7 hours in total", "7", INVALID, "7"),
    ("It takes 2/2=<<2/2=1>>1 bolt of white fiber", "1", INVALID, "1"),
    ("Total: 1,000,000.", "1000000", INVALID, "1,000,000."),
    ("", "18", INVALID, INVALID),
    ("No idea.", "18", INVALID, INVALID),
    ("First \\boxed{18}, then corrected: \\boxed{20}", "20", "20", "20"),
    ("\\boxed{\\frac{1}{2}}", "0.5", "\\frac{1}{2}", "2"),
    ("The answer is 18,000.", "18000", "18,000", "18,000."),
    ("#### -3", "-3", "-3", "-3"),
    ("5 apples, then 10 apples.\n#### 15 apples", "15", "15", "15"),
    ("The answer is: 18", "18", INVALID, "18"),
    ("She earns 18.5 dollars", "18.5", INVALID, "18.5"),
    ("\\boxed{18 \\text{ dollars}}", "18", "18 \\text{ dollars}", "18"),
    ("#### 18\n#### 19", "18", "18", "19"),
    ("The answer is 7 apples.", "7", "7", "7"),
    ("Each gets 1/4 of the pie.", "1/4", INVALID, "1/4"),  # our one change: the harness takes "4"
]


def lm_eval_exact_match(pred: str, gold: str) -> bool:
    """The harness's exact_match for gsm8k: regexes_to_ignore [",", "\\$", "(?s).*#### ", "\\.$"], ignore_case."""
    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]

    def clean(s: str) -> str:
        for pattern in ignore:
            s = re.sub(pattern, "", s)
        return s.lower()

    return clean(pred) == clean(gold)


# Where our numeric comparison credits an answer that the harness's string comparison does not.
NUMERIC_ONLY = {"18.00", "\\$18", "18 \\text{ dollars}", "\\frac{1}{2}", "1/4"}


@pytest.mark.parametrize(("output", "gold", "strict", "flexible"), STYLES)
def test_number_extraction_follows_lm_eval(output: str, gold: str, strict: str, flexible: str) -> None:
    assert NUMBER.strict(output, {}) == strict
    assert NUMBER.flexible(output, {}) == flexible
    for extracted in (strict, flexible):
        ours, theirs = NUMBER.equal(extracted, gold), extracted != INVALID and lm_eval_exact_match(extracted, gold)
        assert ours == theirs or (extracted in NUMERIC_ONLY and ours), (extracted, gold)


def test_style_table_is_broad() -> None:
    assert len(STYLES) >= 30
    assert sum(s == INVALID for _, _, s, _ in STYLES) >= 10


def test_last_boxed_balances_braces() -> None:
    assert last_boxed("x \\boxed{\\frac{a}{b+{c}}} y") == "\\frac{a}{b+{c}}"
    assert last_boxed("\\boxed{1} and \\boxed{2") == "1"
    assert last_boxed("no box") is None


def test_numbers_compare_without_commas_dollars_and_units() -> None:
    assert numbers_equal("$1,234", "1234")
    assert numbers_equal("18 dollars", "18")
    assert numbers_equal("4.33", "4.33")
    assert not numbers_equal("4.3", "4.33")
    assert numbers_equal("None", "None") and not numbers_equal("None", "3")
    assert to_number("\\frac{3}{4}") == 0.75
    assert not numbers_equal(INVALID, INVALID)


def test_math_answers_go_through_math_verify() -> None:
    math = EXTRACTIONS["math"]
    out = "So $r=3$ and $\\theta=\\pi/2$.\n\n###Answer: \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}"
    assert math.strict(out, {}) == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert math_equal("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)")
    assert math_equal("\\dfrac{1}{2}", "0.5")
    assert not math_equal("\\frac{1}{3}", "0.5")
    assert math.flexible("Thus the answer is $\\frac{14}{3}$.", {}) == "\\frac{14}{3}"
    assert math.strict("the answer is 4", {}) == INVALID


def test_choice_letters_are_normalised() -> None:
    choice = EXTRACTIONS["choice"]
    meta = {"choices": {"A": "bank", "B": "library", "C": "mall", "D": "park", "E": "zoo"}}
    assert choice.strict("###Answer: \\boxed{(B)}", meta) == "B"
    assert choice.strict("\\boxed{library}", meta) == "B"
    assert choice.strict("So the answer is (c).", meta) == "C"
    assert choice.strict("A bank is a place.", meta) == INVALID
    assert choice.flexible("A bank is safe, so I pick (E).", meta) == "E"
    assert choice.flexible("D", meta) == "D"
    assert choice.flexible("People keep money in a bank.", meta) == "A"
    assert choice.equal("b", "B") and not choice.equal(INVALID, "B")


def test_yes_no_is_normalised() -> None:
    yesno = EXTRACTIONS["yesno"]
    assert yesno.strict("###Answer: \\boxed{Yes}", {}) == "yes"
    assert yesno.strict("\\boxed{False}", {}) == "no"
    assert yesno.strict("The answer is no.", {}) == "no"
    assert yesno.strict("Yes, it is.", {}) == INVALID
    assert yesno.flexible("Yes, it is. So true.", {}) == "yes"
    assert yesno.flexible("I cannot tell.", {}) == INVALID


def _harness(pattern: str, text: str, group_select: int) -> str:
    """lm_eval/filters/extraction.py RegexFilter.apply for one response, written out independently."""
    match = re.compile(pattern).findall(text)
    if not match:
        return INVALID
    match = match[group_select]
    if isinstance(match, tuple):
        match = [m for m in match if m]
        match = match[0] if match else INVALID
    return match.strip()


HARNESS_STRICT = {"####": r"#### (\-?[0-9\.\,]+)", "cot": r"The answer is (\-?[0-9\.\,]+)."}
HARNESS_FLEXIBLE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
TEMPLATES = [
    ("####", "Working: 3 + 4 = 7.\n#### {a}"),
    ("####", "Total ${a}.\n#### {a}\n"),
    ("####", "#### {a} units"),
    ("cot", "So 2 * 3 = 6. The answer is {a}."),
    ("cot", "The answer is {a} dollars."),
    ("cot", "We get 12 then 5. The answer is {a}.\n\nQ: next"),
]


@pytest.fixture
def shared_benchmarks() -> Path:
    path = SHARED / "benchmarks"
    if not (path / "gsm8k").is_dir():
        pytest.skip(f"GSM8K not found at {path / 'gsm8k'} (set RSCAFFOLD_SHARED_DATA to the shared data folder)")
    return path


def test_gsm8k_test_questions_in_many_styles(shared_benchmarks: Path) -> None:
    """Real GSM8K gold answers written in each style: our rules give the harness's results, and a
    right answer is scored right wherever the harness finds it."""
    from rscaffold.benchmarks import BENCHMARKS

    questions = list(BENCHMARKS["gsm8k"](shared_benchmarks / "gsm8k"))[:200]
    for q in questions:
        for fmt, template in TEMPLATES:
            text = template.format(a=f"{int(q.gold):,}" if q.gold.lstrip("-").isdigit() else q.gold)
            strict = _harness(HARNESS_STRICT[fmt], text, 0)
            assert NUMBER.strict(text, {}) == strict, text
            assert NUMBER.flexible(text, {}) == _harness(HARNESS_FLEXIBLE, text, -1), text
            if lm_eval_exact_match(strict, q.gold):
                assert NUMBER.equal(NUMBER.strict(text, {}), q.gold), text
