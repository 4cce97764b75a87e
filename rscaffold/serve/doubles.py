"""The models `rscaffold serve` hosts: the scripted teacher, a scripted judge, a fixed echo, a local HF LM.

Each is a plain function ``(request body) -> chat message`` (``reasoning_content`` and ``content``),
kept in a plain dict by the server. The scripted teacher finds its question by the text inside the
paper's prompt (exact match), so the server needs the testbed questions (``--questions``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rscaffold.config import ScriptedConfig
from rscaffold.label.judge import step_of_prompt
from rscaffold.schema import InputError, Question, read_jsonl
from rscaffold.signals import TITLES, Signal, load_lexicon
from rscaffold.teachers import split_reasoning, strip_prompt
from rscaffold.testbed.teacher import ScriptedTeacher

Model = Callable[[dict[str, Any]], dict[str, str]]


class UnknownRequest(ValueError):
    """A request the model cannot answer (the server replies 400 with this message)."""


def load_questions(path: str | Path) -> Iterator[Question]:
    """Questions of one JSONL file, or of every ``*.jsonl`` file in a folder."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path}: no *.jsonl question files there")
    for f in files:
        yield from read_jsonl(f, Question)


def last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users or not isinstance(users[-1].get("content"), str):
        raise UnknownRequest("expected a user message with text content")
    return users[-1]["content"]


class Scripted:
    """The scripted teacher behind the API: the question's trace as DeepSeek would send it."""

    def __init__(self, questions: dict[str, Question], cfg: ScriptedConfig, seed: int):
        self.questions, self.cfg, self.seed = questions, cfg, seed

    def __call__(self, body: dict[str, Any]) -> dict[str, str]:
        text = strip_prompt(last_user_text(body))
        q = self.questions.get(text)
        if q is None:
            raise UnknownRequest("unknown question: start the server with --questions holding it")
        seed = body.get("seed") if isinstance(body.get("seed"), int) else self.seed
        trace = ScriptedTeacher(self.cfg, seed).trace(q)
        return {"role": "assistant", "reasoning_content": trace.thinking, "content": trace.answer_text}


class ScriptedJudge:
    """Answers the judge prompt with the step's true signal (from the scripted traces of the loaded
    questions), else by keyword (extended lexicon), else Reasoning and Analysis; spelled in varying
    case and spacing, and, for a share of first askings, invalidly (to exercise the client's retries)."""

    def __init__(self, questions: dict[str, Question], cfg: ScriptedConfig, seed: int, invalid_share: float):
        self.questions, self.cfg, self.seed, self.invalid_share = questions, cfg, seed, invalid_share
        self.truth: dict[str, Signal] | None = None
        self.asked: set[str] = set()

    def _truth(self) -> dict[str, Signal]:
        if self.truth is None:
            teacher = ScriptedTeacher(self.cfg, self.seed)
            self.truth = {
                s.text: s.true_signal
                for q in self.questions.values()
                for s in teacher.trace(q).steps
                if s.true_signal is not None and s.true_signal is not Signal.RESPONSE
            }
        return self.truth

    def __call__(self, body: dict[str, Any]) -> dict[str, str]:
        prompt = last_user_text(body)
        step = step_of_prompt(prompt)
        if step is None:
            raise UnknownRequest("not a judge prompt (no 'Step to label' block)")
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        rng = random.Random(digest)
        if digest not in self.asked and rng.random() < self.invalid_share:
            self.asked.add(digest)
            return {"role": "assistant", "content": rng.choice(_INVALID)}
        signal = self._truth().get(step)  # not `or`: Contrast is signal 0, which is falsy
        if signal is None:
            signal = _keyword(step)
        title = TITLES[Signal.REASONING if signal is None else signal]
        return {"role": "assistant", "content": rng.choice(_SPELLINGS).format(title)}


_INVALID = ["I would call it a conclusion.", "\\boxed{Response Generation}", "\\boxed{Banana}", "\\boxed{}"]
_SPELLINGS = ["\\boxed{{{}}}", "The signal is \\boxed{{{}}}.", "**\\boxed{{ {} }}**"]


def _keyword(step: str) -> Signal | None:
    hit = load_lexicon("extended").match(step)
    return None if hit is None else hit[0]


def echo(body: dict[str, Any]) -> dict[str, str]:
    """A fixed short answer: the throughput benchmark measures the plumbing, not a model."""
    message = {"role": "assistant", "reasoning_content": "Let me see.\n\nSo it is 42."}
    return {**message, "content": "###Answer: \\boxed{42}"}


class HfChat:
    """A local Hugging Face causal LM behind the API (loaded on first use; needs transformers)."""

    def __init__(self, path: str, device: str = "cpu"):
        self.path, self.device = path, device
        self.chat: Any = None

    def __call__(self, body: dict[str, Any]) -> dict[str, str]:
        if self.chat is None:
            from rscaffold.teachers.hf_local import HfGenerator

            self.chat = HfGenerator(self.path, self.device)
        text = self.chat.complete(
            body["messages"],
            max_new_tokens=int(body.get("max_tokens") or 256),
            temperature=float(body.get("temperature") or 0.0),
            top_p=float(body.get("top_p") or 1.0),
            seed=body.get("seed") if isinstance(body.get("seed"), int) else 0,
        )
        thinking, answer, _ = split_reasoning({"content": text})
        message = {"role": "assistant", "content": answer if thinking else text}
        return {**message, "reasoning_content": thinking} if thinking else message


def build_models(
    questions_path: str | None, scripted: ScriptedConfig, seed: int, hf_model: str | None, judge_invalid_share: float
) -> dict[str, Model]:
    """The model names the server answers to; the scaffolded student will be one more entry."""
    questions = {q.text: q for q in load_questions(questions_path)} if questions_path else {}
    models: dict[str, Model] = {
        "scripted": Scripted(questions, scripted, seed),
        "scripted-judge": ScriptedJudge(questions, scripted, seed, judge_invalid_share),
        "echo": echo,
    }
    if hf_model:
        models[Path(hf_model).name] = HfChat(hf_model)
    return models
