"""A saved student: decode's adapter matches the proposer's own forward, and `serve --student` answers,
with its steps in an extra field and streamed one delta per step."""

from __future__ import annotations

import json

import httpx
import torch

from rscaffold.config import DecodeConfig, ServeConfig
from rscaffold.decode import Decoder
from rscaffold.model import load_student, student_from_folder
from rscaffold.schema import Question
from rscaffold.serve import serve_in_thread
from rscaffold.signal_sources import GoldenSignals
from rscaffold.signals import Signal
from rscaffold.tokenizer import NO_SIGNAL

DECODE = DecodeConfig(max_steps=3, max_step_tokens=8, max_answer_tokens=6, tau=0.0)


def test_decoding_follows_the_proposers_own_forward(served_student, monkeypatch):
    student_dir = served_student
    """Teacher-forcing the decoded tokens through the proposer, with signal ids laid out as in
    training, gives back every token greedy decoding chose: the decode-time bias is the SEL."""
    from rscaffold.kvbatch import Batch

    fed: list[int] = []
    original = Batch.step
    monkeypatch.setattr(Batch, "step", lambda self, tokens: (fed.extend(tokens), original(self, tokens))[1])
    golden = [Signal.REASONING, Signal.CONCLUSION, Signal.CONTRAST]
    q = Question(id="q", text="B has 3 apples.")
    student = student_from_folder(student_dir)
    (d,) = Decoder(student, GoldenSignals({"q": golden}), DECODE)([q])
    prompt = student.encode(student.prompt(q.text))
    per_token = [int(s.signal) for s, n in zip(d.steps, d.metadata["step_tokens"], strict=True) for _ in range(n)]
    per_token += [int(Signal.RESPONSE)] * (d.tokens - len(per_token))
    signal_ids = [NO_SIGNAL] * (len(prompt) - 1) + per_token  # position p carries the signal of token p + 1
    full = prompt + fed
    model, _, _ = load_student(student_dir)
    with torch.no_grad():
        logits = model(torch.tensor([full]), signal_ids=torch.tensor([signal_ids[: len(full)]]))[0][0]
    assert len(fed) == d.tokens - 1 and len(d.steps) == 3  # the last answer token is never fed
    assert logits[len(prompt) - 1 :].argmax(-1).tolist()[: len(fed)] == fed


def test_serve_student_answers_with_signal_tagged_steps(served_student):
    student_dir = served_student
    cfg = ServeConfig(port=0, student=str(student_dir))
    name = student_dir.name
    body = {"model": name, "messages": [{"role": "user", "content": "B has 3 apples. How many?"}]}
    with serve_in_thread(cfg, decode=DECODE) as url:
        models = httpx.get(f"{url}/models").json()["data"]
        reply = httpx.post(f"{url}/chat/completions", json=body, timeout=60).json()
        with httpx.stream("POST", f"{url}/chat/completions", json={**body, "stream": True}, timeout=60) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert name in [m["id"] for m in models]
    message = reply["choices"][0]["message"]
    assert message["steps"] and all(s["signal"] in [t.title for t in Signal] for s in message["steps"])
    assert message["reasoning_content"] == "".join(s["text"] + "\n\n" for s in message["steps"])
    deltas = [e["choices"][0]["delta"] for e in events]
    step_deltas = [d for d in deltas if "rscaffold_step" in d]
    assert [d["rscaffold_step"] for d in step_deltas] == message["steps"]  # one delta per step, in order
    assert "".join(d.get("reasoning_content", "") for d in deltas) == message["reasoning_content"]
    assert "".join(d.get("content", "") for d in deltas) == message["content"]
    last_step = max(i for i, d in enumerate(deltas) if "rscaffold_step" in d)
    assert all("content" not in d for d in deltas[: last_step + 1])  # the answer comes after the steps
