"""Real teachers (METHOD.md section 3, "Generate"): the prompt, the answer extraction, the rejection filter.

The backends live beside this module: :mod:`rscaffold.teachers.openai_compat` (any OpenAI-compatible
server) and :mod:`rscaffold.teachers.hf_local` (a local Hugging Face causal LM). Both ask with the
paper's zero-shot prompt, kept here as data with a version string that is part of every cache key,
so changing the wording can never return answers to the old wording.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rscaffold.schema import Trace

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

PROMPTS: dict[str, dict[str, str]] = {
    "paper-v1": {
        "system": "",
        "user": (
            "Solve the following problem. Think step by step, then give the final answer on the last line "
            "as ###Answer: \\boxed{{answer}}.\n\nProblem: {question}"
        ),
    },
}
"""Generation prompts by version: ``user`` holds ``{question}``; an empty ``system`` sends no system message."""


def build_messages(version: str, question: str) -> list[dict[str, str]]:
    """The chat messages of the generation prompt ``version`` around ``question``."""
    template = PROMPTS[version]
    messages = [{"role": "system", "content": template["system"]}] if template["system"] else []
    return [*messages, {"role": "user", "content": template["user"].format(question=question)}]


def strip_prompt(user_text: str) -> str:
    """The question inside a user message written by any known prompt version (or the text itself)."""
    for template in PROMPTS.values():
        head, _, tail = template["user"].replace("{{", "{").replace("}}", "}").partition("{question}")
        if user_text.startswith(head) and user_text.endswith(tail) and len(user_text) >= len(head) + len(tail):
            return user_text[len(head) : len(user_text) - len(tail)]
    return user_text


def split_reasoning(message: dict) -> tuple[str, str, bool]:
    """(thinking, answer, truncated) of a chat message: ``reasoning_content`` (DeepSeek), ``reasoning``
    (OpenRouter, vLLM), or a ``<think>`` block in the content. ``truncated``: thinking never closed."""
    content = message.get("content")
    content = content if isinstance(content, str) else ""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(message.get(key), str) and message[key]:
            return message[key], content, False
    start, close = content.find(THINK_OPEN), content.find(THINK_CLOSE)
    if close == -1:
        if start == -1:
            return "", content, False
        return content[start + len(THINK_OPEN) :], "", True
    begin = start + len(THINK_OPEN) if 0 <= start < close else 0
    return content[begin:close], content[close + len(THINK_CLOSE) :], False


# ----------------------------------------------------------------------------- answers

_BOXED = re.compile(r"\\boxed\s*\{")
_ANSWER_LINE = re.compile(r"(?:###\s*Answer|final answer(?: is)?|answer(?: is)?)\s*[:：]?\s*(.+)", re.IGNORECASE)
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?(?:[.):]|\s|$)")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_NUMBER = re.compile(r"^[-+]?\d[\d,]*(?:\.\d+)?$|^[-+]?\.\d+$")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (nested braces allowed), or None."""
    found = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[m.end() : i - 1]
    return found


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
    if _NUMBER.match(compact):
        number = float(compact.replace(",", ""))
        return str(int(number)) if number.is_integer() else repr(number)
    return compact


def answers_match(final: str | None, gold: str | None) -> bool | None:
    """Rejection filter: whether a final answer equals the gold answer; None when either is missing."""
    if final is None or gold is None:
        return None
    return canonical_answer(final) == canonical_answer(gold)


def rejection_filter(traces: Iterable[Trace], counts: dict[str, int], drop_wrong: bool = True) -> Iterator[Trace]:
    """Keep traces whose final answer matches the gold answer; counts generated / kept / dropped_wrong
    (a trace with no final answer to a question with a gold answer counts as wrong)."""
    for trace in traces:
        counts["generated"] += 1
        if drop_wrong and trace.gold is not None and not answers_match(trace.final_answer, trace.gold):
            counts["dropped_wrong"] += 1
            continue
        counts["kept"] += 1
        yield trace
