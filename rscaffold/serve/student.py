"""The scaffolded student behind `rscaffold serve --student DIR` (METHOD.md section 5).

A request's last user message is the question (the paper's prompt around it is stripped). The
reply's ``content`` is the answer; ``reasoning_content`` holds the steps as text, and the extra field
``steps`` the steps with their signals and the predictor's confidences. Streamed, each step is sent
as one delta as soon as it is written, with its signal in ``rscaffold_step``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from rscaffold.config import DecodeConfig
from rscaffold.decode import Decoder
from rscaffold.model import student_from_folder
from rscaffold.schema import Decoded, Question, Step
from rscaffold.serve.doubles import last_user_text
from rscaffold.signal_sources import HeadPredictor, NoSignals
from rscaffold.teachers import strip_prompt

_END = object()


def step_json(step: Step) -> dict[str, Any]:
    signal = step.signal.title if step.signal is not None else None
    return {"text": step.text, "signal": signal, "confidence": step.confidence}


class StudentChat:
    """A trained student answering chat requests through signal-guided decoding (one at a time)."""

    def __init__(self, path: str, cfg: DecodeConfig):
        self.student = student_from_folder(path)
        self.cfg = cfg.model_copy(update={"batch_size": 1})
        guided = self.student.signal_head is not None or self.student.signal_prefix is not None
        self.source = HeadPredictor() if guided else NoSignals()
        self.lock = threading.Lock()

    def _decode(self, body: dict[str, Any], on_step: Any = None) -> Decoded:
        question = Question(id="request", text=strip_prompt(last_user_text(body)))
        with self.lock:
            (out,) = Decoder(self.student, self.source, self.cfg, on_step=on_step)([question])
        return out

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        out = self._decode(body)
        return {
            "role": "assistant",
            "content": out.answer_text,
            "reasoning_content": "".join(s.text + s.sep for s in out.steps),
            "steps": [step_json(s) for s in out.steps],
            "stop_reason": out.stop_reason,
        }

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Deltas: one per step as soon as it is written, then the answer."""
        events: queue.Queue[Any] = queue.Queue()

        def work() -> None:
            try:
                out = self._decode(body, on_step=lambda _q, step: events.put({"step": step}))
                events.put({"answer": out.answer_text, "stop_reason": out.stop_reason})
            except Exception as e:  # surfaced to the client as the stream's last event
                events.put({"error": str(e)})
            events.put(_END)

        threading.Thread(target=work, daemon=True).start()
        while (event := events.get()) is not _END:
            if "step" in event:
                step = event["step"]
                yield {"reasoning_content": step.text + step.sep, "rscaffold_step": step_json(step)}
            elif "answer" in event:
                yield {"content": event["answer"]}
            else:
                yield {"error": event["error"]}
