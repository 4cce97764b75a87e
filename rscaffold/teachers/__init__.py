"""Real teachers (METHOD.md section 3, "Generate"): the prompt, the answer extraction, the rejection filter.

The backends live beside this module: :mod:`rscaffold.teachers.openai_compat` (any OpenAI-compatible
server) and :mod:`rscaffold.teachers.hf_local` (a local Hugging Face causal LM). Both ask with the
paper's zero-shot prompt, kept here as data with a version string that is part of every cache key,
so changing the wording can never return answers to the old wording.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rscaffold.answers import answers_match
from rscaffold.prompts import PROMPTS
from rscaffold.schema import Trace

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


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
