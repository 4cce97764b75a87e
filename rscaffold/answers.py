"""Answer extraction: a named, versioned step per answer kind, with a strict and a flexible rule.

Strict takes only an answer the text marks as its answer; flexible also takes the last thing that
looks like one. Both are reported side by side, so a student that reasons well but ignores the answer
format is visible as the gap between them.

The numeric rules follow lm-evaluation-harness exactly, quirks included, so our GSM8K numbers can be
set beside published ones (``lm_eval/tasks/gsm8k/gsm8k.yaml``, metadata version 3.0, and
``gsm8k-cot.yaml``, and the ``RegexFilter`` of ``lm_eval/filters/extraction.py``):

- strict-match, ``gsm8k.yaml``: ``#### (\\-?[0-9\\.\\,]+)``, first match;
- strict-match, ``gsm8k-cot.yaml``: ``The answer is (\\-?[0-9\\.\\,]+).``, first match (the final ``.``
  is any character, so "The answer is 18" at the very end of a text yields "1", as in the harness);
- flexible-extract: ``(-?[$0-9.,]{2,})|(-?[0-9]+)``, last match, first non-empty group, stripped;
  one change: a fraction ``1/4`` is kept whole (the harness takes "4"; GSM-Plus has fraction answers).

Our own prompt asks for ``###Answer: \\boxed{...}`` (METHOD.md section 3), so strict also accepts the
last brace-balanced ``\\boxed{}``, as the harness's MATH tasks do. Numbers are then compared as numbers
after removing commas, ``$``, a trailing period and units (the harness compares strings after
removing commas, ``$`` and a trailing period; "18.00" vs "18" is the only kind of case where we differ).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INVALID = "[invalid]"
"""What an extraction returns when the text holds no answer (the harness's fallback string)."""

LM_EVAL_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
LM_EVAL_COT_STRICT = re.compile(r"The answer is (\-?[0-9\.\,]+).")
LM_EVAL_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+(?:\.\d+)?)?")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def regex_filter(pattern: re.Pattern[str], text: str, group_select: int = 0) -> str:
    """The harness's ``RegexFilter``: the selected match, its first non-empty group, stripped."""
    found = pattern.findall(text)
    if not found:
        return INVALID
    match = found[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), INVALID)
    return match.strip()


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{}``), braces balanced; None if none closes."""
    for start in reversed([m.end() for m in _BOXED.finditer(text)]):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
    return None


def to_number(text: str) -> float | None:
    """The first number in ``text`` once commas, ``$`` and LaTeX spacing are gone; units are ignored.

    Fractions written ``a/b`` or ``\\frac{a}{b}`` count as numbers; anything else without a digit is None.
    """
    text = text.replace(",", "").replace("$", "").replace("\\!", "").replace("{,}", "")
    text = re.sub(r"\\[dt]?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", r"\1/\2", text)
    m = _NUMBER.search(text)
    if m is None:
        return None
    num, _, den = m.group(0).replace(" ", "").partition("/")
    try:
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        return None


def numbers_equal(pred: str, gold: str) -> bool:
    """Equal as numbers (relative tolerance 1e-6); two texts without numbers compare case-insensitively."""
    if pred == INVALID:
        return False
    p, g = to_number(pred), to_number(gold)
    if p is None or g is None:
        return p is None and g is None and _plain(pred) == _plain(gold)
    return abs(p - g) <= 1e-6 * max(1.0, abs(g))


def _plain(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


# -- numbers: GSM8K, SVAMP, GSM-Hard, GSM-Plus, the testbed ------------------------------------


def number_strict(text: str, meta: dict[str, Any]) -> str:
    """``#### N`` (harness strict-match), else the last ``\\boxed{}``, else ``The answer is N.`` (harness cot)."""
    for found in (regex_filter(LM_EVAL_STRICT, text), last_boxed(text), regex_filter(LM_EVAL_COT_STRICT, text)):
        if found not in (None, INVALID, ""):
            return found
    return INVALID


def number_flexible(text: str, meta: dict[str, Any]) -> str:
    """The harness's flexible-extract (last number-like run); "None" when the text says so and has no number.

    GSM-Plus "critical thinking" questions have the gold answer "None" (unanswerable by design).
    """
    found = regex_filter(LM_EVAL_FLEXIBLE, text, group_select=-1)
    if found == INVALID and re.search(r"\bnone\b", text, re.IGNORECASE):
        return "None"
    # Our one change to the harness's rule: a fraction "1/4" is kept whole, not cut to its denominator.
    last = list(LM_EVAL_FLEXIBLE.finditer(text))
    numerator = re.search(r"(-?\d+)\s*/\s*$", text[: last[-1].start()]) if last else None
    if numerator and found.isdigit():
        return f"{numerator.group(1)}/{found}"
    return found


# -- LaTeX expressions: MATH-500 ------------------------------------------------------------------


def math_strict(text: str, meta: dict[str, Any]) -> str:
    """The last ``\\boxed{}`` (as the harness's minerva_math and open-r1 take it)."""
    found = last_boxed(text)
    return found if found else INVALID


def math_flexible(text: str, meta: dict[str, Any]) -> str:
    """The last ``\\boxed{}``, else what follows "the answer is", else the last ``$...$``, else the last line."""
    found = last_boxed(text)
    if found:
        return found
    said = re.findall(r"answer is:?\s*(.+?)\s*(?:\.\s*)?$", text, re.IGNORECASE | re.MULTILINE)
    if said:
        return said[-1].strip("$ ")
    inline = re.findall(r"\$([^$]+)\$", text)
    if inline:
        return inline[-1].strip()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else INVALID


def math_equal(pred: str, gold: str) -> bool:
    """Equivalence by math-verify (sympy), with both sides read as LaTeX; exact text as a fallback."""
    if pred == INVALID:
        return False
    if _plain(pred) == _plain(gold) and pred.replace(" ", "") == gold.replace(" ", ""):
        return True
    from math_verify import parse, verify  # lazily: sympy takes a second to import

    try:
        return bool(verify(parse(f"${gold}$"), parse(f"${pred}$")))
    except Exception:  # math-verify raises on some malformed LaTeX; that answer is simply not equal
        return False


# -- choice letters: CommonsenseQA, TruthfulQA (mc1) ---------------------------------------------


def _letter(text: str, meta: dict[str, Any]) -> str | None:
    """A choice label out of a short answer: "B", "(B)", "B.", "B) bank", or a choice's exact text."""
    choices: dict[str, str] = meta.get("choices", {})
    m = re.match(r"^\s*\(?([A-Z])\)?(?:[.):]|\s|$)", text.strip())
    if m and (not choices or m.group(1) in choices):
        return m.group(1)
    wanted = _plain(text)
    return next((label for label, choice in choices.items() if _plain(choice) == wanted), None)


def choice_strict(text: str, meta: dict[str, Any]) -> str:
    """The label in the last ``\\boxed{}``, else after "the answer is"."""
    boxed = last_boxed(text)
    if boxed is not None:
        return _letter(boxed, meta) or INVALID
    said = re.findall(r"answer is:?\s*(\(?[A-Z]\)?)(?![A-Za-z])", text, re.IGNORECASE)
    return (_letter(said[-1].upper(), meta) or INVALID) if said else INVALID


def choice_flexible(text: str, meta: dict[str, Any]) -> str:
    """Strict, else the last ``(X)`` / ``X.`` / ``X)`` / lone ``X`` line, else the last choice text named."""
    found = choice_strict(text, meta)
    if found != INVALID:
        return found
    labels = "".join(meta.get("choices", {})) or "ABCDE"
    marks = list(re.finditer(rf"\(([{labels}])\)|\b([{labels}])[.)]|^\s*([{labels}])\s*$", text, re.MULTILINE))
    if marks:
        return next(g for g in marks[-1].groups() if g)
    lower = text.lower()
    named = [(lower.rfind(c.lower()), label) for label, c in meta.get("choices", {}).items() if c.lower() in lower]
    return max(named)[1] if named else INVALID


def label_equal(pred: str, gold: str) -> bool:
    return pred != INVALID and pred.strip().upper() == gold.strip().upper()


# -- yes / no: StrategyQA -------------------------------------------------------------------------

_YES_NO = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def yesno_strict(text: str, meta: dict[str, Any]) -> str:
    """yes/no (or true/false) in the last ``\\boxed{}``, else right after "the answer is"."""
    boxed = last_boxed(text)
    said = [boxed] if boxed is not None else re.findall(r"answer is:?\s*(\w+)", text, re.IGNORECASE)
    word = _plain(said[-1]).split(" ")[0] if said else ""
    return _YES_NO.get(word, INVALID)


def yesno_flexible(text: str, meta: dict[str, Any]) -> str:
    """Strict, else the last yes/no/true/false word."""
    found = yesno_strict(text, meta)
    if found != INVALID:
        return found
    words = re.findall(r"\b(yes|no|true|false)\b", text, re.IGNORECASE)
    return _YES_NO[words[-1].lower()] if words else INVALID


@dataclass(frozen=True)
class Extraction:
    """One answer-extraction step: its name and version go into results.json beside the scores."""

    name: str
    version: str
    strict: Callable[[str, dict[str, Any]], str]
    flexible: Callable[[str, dict[str, Any]], str]
    equal: Callable[[str, str], bool]

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


EXTRACTIONS = {
    "number": Extraction("number", "1", number_strict, number_flexible, numbers_equal),
    "math": Extraction("math", "1", math_strict, math_flexible, math_equal),
    "choice": Extraction("choice", "1", choice_strict, choice_flexible, label_equal),
    "yesno": Extraction("yesno", "1", yesno_strict, yesno_flexible, label_equal),
}


# -- the teacher's final answer and the rejection filter -------------------------------------------

_ANSWER_LINE = re.compile(r"(?:###\s*Answer|final answer(?: is)?|answer(?: is)?)\s*[:：]?\s*(.+)", re.IGNORECASE)
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?(?:[.):]|\s|$)")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_NUMERIC = re.compile(r"^[-+]?\d[\d,]*(?:\.\d+)?$|^[-+]?\.\d+$")


def extract_final_answer(answer_text: str) -> str | None:
    """The final answer of an answer text: the last ``\\boxed{}``, else the text after ``Answer:``."""
    boxed = last_boxed(answer_text)
    if boxed is not None:
        return boxed.strip()
    lines = [m.group(1).strip() for m in _ANSWER_LINE.finditer(answer_text)]
    return lines[-1].rstrip(".").strip() or None if lines else None


def canonical_answer(answer: str) -> str:
    """A canonical form for comparing answers: numbers (``1,200.0`` -> ``1200``), LaTeX wrappers
    (``\\text{}``, ``\\frac{a}{b}`` kept), choice letters (``(B)`` -> ``b``), yes/no (``True`` -> ``yes``)."""
    text = _TEXT_WRAP.sub(r"\1", answer).strip().strip("$").strip()
    text = text.replace("\\!", "").replace("\\,", "").replace("\\dfrac", "\\frac").replace("\\%", "%")
    low = text.lower().rstrip(".").strip()
    if low in ("yes", "true"):
        return "yes"
    if low in ("no", "false"):
        return "no"
    m = _CHOICE.match(low)
    if m and (len(low) <= 3 or low[1:2] in ").:"):
        return m.group(1)
    compact = low.replace(" ", "").replace("$", "")
    if _NUMERIC.match(compact):
        number = float(compact.replace(",", ""))
        return str(int(number)) if number.is_integer() else repr(number)
    return compact


def answers_match(final: str | None, gold: str | None) -> bool | None:
    """Rejection filter: whether a final answer equals the gold answer; None when either is missing.
    Numbers compare as evaluation compares them (:func:`numbers_equal`), the rest in canonical form."""
    if final is None or gold is None:
        return None
    a, b = canonical_answer(final), canonical_answer(gold)
    return a == b or (bool(_NUMERIC.match(b)) and numbers_equal(final, gold))
