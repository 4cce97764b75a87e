"""The scaffolded student behind `rscaffold serve --student DIR` (METHOD.md section 5).

A chat request's last user message (or a completion request's prompt) is the question (the paper's
prompt around it is stripped). The reply's ``content`` (``text``) is the answer; ``reasoning_content``
holds the steps as text, and the extra field ``steps`` the steps with their signals and the
predictor's confidences. Streamed, each step is sent as one delta as soon as it is written, with its
signal in ``rscaffold_step``.

Requests decode together in one running batch (:mod:`rscaffold.serve.engine`). Besides the OpenAI
fields ``max_tokens`` (every token written, steps and answer; finish reason ``length`` when it cuts),
``temperature`` and ``top_p``, a request may ask for ``signal_source`` (``predictor-head``, ``none``,
``golden`` with ``signals``: the list of signal names to follow, or ``random`` when the server was
given training traces) and ``tau``; what it does not give comes from the server's ``decode`` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rscaffold.config import DecodeConfig
from rscaffold.decode import device_for
from rscaffold.model import student_from_folder
from rscaffold.schema import Decoded, Step, Trace, read_jsonl
from rscaffold.serve.doubles import UnknownRequest, last_user_text
from rscaffold.serve.engine import Engine
from rscaffold.signal_sources import random_source
from rscaffold.signals import TITLES, Signal
from rscaffold.teachers import strip_prompt

SOURCES = ("predictor-head", "none", "golden", "random")
_NAMES = {s.key: s for s in Signal} | {TITLES[s].lower(): s for s in Signal}


def step_json(step: Step) -> dict[str, Any]:
    signal = step.signal.title if step.signal is not None else None
    return {"text": step.text, "signal": signal, "confidence": step.confidence}


class StudentChat:
    """A trained student answering chat and completion requests through signal-guided decoding, all
    requests in one running batch."""

    def __init__(
        self,
        path: str,
        cfg: DecodeConfig,
        batch_size: int = 16,
        max_queue: int = 256,
        train_traces: str | Path | None = None,
    ):
        self.student = student_from_folder(path, device_for(cfg))
        self.guided = self.student.follows_signals
        default = "predictor-head" if self.guided else "none"
        self.cfg = cfg.model_copy(update={"signal_source": default if cfg.signal_source != "none" else "none"})
        rand = random_source(read_jsonl(train_traces, Trace), cfg.seed) if train_traces else None
        self.engine = Engine(self.student, self.cfg, batch_size, max_queue, rand)

    def settings(self, body: dict[str, Any]) -> tuple[DecodeConfig, list[Signal] | None]:
        """The decode settings a request asks for (UnknownRequest, a 400, when it asks for what cannot be)."""
        update: dict[str, Any] = {}
        for key, target in (("max_tokens", "max_new_tokens"), ("temperature", "temperature"), ("top_p", "top_p")):
            if body.get(key) is not None:
                update[target] = body[key]
        source = body.get("signal_source", self.cfg.signal_source)
        if source not in SOURCES:
            raise UnknownRequest(f"field 'signal_source': one of {', '.join(SOURCES)}, got {source!r}")
        if source != "none" and not self.guided:
            raise UnknownRequest(f"field 'signal_source': this student follows no signals; only 'none', got {source!r}")
        if source == "random" and self.engine.random_source is None:
            raise UnknownRequest("field 'signal_source': 'random' needs the server started with serve.train_traces")
        update["signal_source"] = source
        if "tau" in body:
            tau = body["tau"]
            if isinstance(tau, bool) or not isinstance(tau, int | float) or not 0 <= tau <= 1:
                raise UnknownRequest(f"field 'tau': a number from 0 to 1, got {tau!r}")
            update["tau"] = float(tau)
        signals = _signals(body.get("signals"), source)
        return DecodeConfig.model_validate({**self.cfg.model_dump(), **update}), signals

    def question(self, body: dict[str, Any], kind: str) -> str:
        if kind == "chat":
            return strip_prompt(last_user_text(body))
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise UnknownRequest("field 'prompt': one string (a list of prompts is not served)")
        return strip_prompt(prompt)

    def prompt_tokens(self, text: str) -> int:
        return len(self.student.encode(self.student.prompt(text)))


def _signals(value: Any, source: str) -> list[Signal] | None:
    if source != "golden":
        if value is not None:
            raise UnknownRequest("field 'signals': goes with signal_source 'golden'")
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnknownRequest("field 'signals': signal_source 'golden' needs a list of signal names")
    unknown = [v for v in value if v.lower() not in _NAMES]
    if unknown:
        raise UnknownRequest(f"field 'signals': unknown signal {unknown[0]!r}; known: {', '.join(_NAMES)}")
    return [_NAMES[v.lower()] for v in value]


def message(d: Decoded) -> dict[str, Any]:
    """The chat reply of a decoded request."""
    return {
        "role": "assistant",
        "content": d.answer_text,
        "reasoning_content": "".join(s.text + s.sep for s in d.steps),
        "steps": [step_json(s) for s in d.steps],
        "stop_reason": d.stop_reason,
    }


def finish_reason(d: Decoded) -> str:
    return "length" if d.stop_reason == "length" else "stop"
