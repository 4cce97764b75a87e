"""Continuous batching in the server: concurrent requests share one running batch and each gets what
a decode of it alone gives (greedy), with the settings it asked for; a full queue is refused at once;
a client that leaves frees its row."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rscaffold.config import DecodeConfig, ServeConfig
from rscaffold.decode import Decoder
from rscaffold.kvbatch import Batch
from rscaffold.model import student_from_folder
from rscaffold.schema import Question
from rscaffold.serve import serve_in_thread
from rscaffold.serve.app import create_app
from rscaffold.serve.engine import Busy, Engine
from rscaffold.serve.student import StudentChat
from rscaffold.signal_sources import GoldenSignals, HeadPredictor, NoSignals
from rscaffold.signals import Signal

DECODE = DecodeConfig(max_steps=4, max_step_tokens=8, max_answer_tokens=6, max_tokens=40, tau=0.0)
QUESTIONS = [f"B has {n} apples and C has {n + 2}. How many in all?" for n in range(10)]


def alone(student, text: str, cfg: DecodeConfig, source=None):
    """The decode of one question by itself (batch of one): the reference a served reply must equal."""
    source = source or HeadPredictor()
    (d,) = Decoder(student, source, cfg.model_copy(update={"batch_size": 1}))([Question(id="q", text=text)])
    return d


def chat(url: str, model: str, text: str, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    r = httpx.post(f"{url}/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def server(served_student):
    """One server for the tests that decode with DECODE (batch of 4 rows)."""
    with serve_in_thread(ServeConfig(port=0, student=str(served_student), batch_size=4), decode=DECODE) as url:
        yield url


@pytest.fixture
def widest(monkeypatch):
    """The largest number of rows any forward of a batch saw."""
    seen = [0]
    original = Batch.step

    def step(self, tokens):
        seen[0] = max(seen[0], len(tokens))
        return original(self, tokens)

    monkeypatch.setattr(Batch, "step", step)
    return seen


def test_concurrent_requests_share_a_batch_and_equal_their_decode_alone(served_student, server, widest):
    student = student_from_folder(served_student)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda q: chat(server, served_student.name, q), QUESTIONS))
    assert widest[0] > 1  # requests decoded together
    for text, reply in zip(QUESTIONS, replies, strict=True):
        d = alone(student, text, DECODE)
        message = reply["choices"][0]["message"]
        assert message["content"] == d.answer_text
        assert [(s["text"], s["signal"]) for s in message["steps"]] == [(s.text, s.signal.title) for s in d.steps]
        assert reply["usage"]["completion_tokens"] == d.tokens
        assert reply["choices"][0]["finish_reason"] == "stop"


def test_each_request_gets_the_settings_it_asked_for(served_student, server):
    """Requests with different sources, tau and max_tokens, sent together, each equal their own decode."""
    student = student_from_folder(served_student)
    golden = ["contrast", "example", "conclusion"]
    asks = [
        ({}, DECODE, None),
        ({"max_tokens": 5}, DECODE.model_copy(update={"max_new_tokens": 5}), None),
        ({"signal_source": "none"}, DECODE, NoSignals()),
        ({"tau": 1.0}, DECODE.model_copy(update={"tau": 1.0}), None),
        (
            {"signal_source": "golden", "signals": golden},
            DECODE,
            GoldenSignals({"q": [Signal.CONTRAST, Signal.EXAMPLE, Signal.CONCLUSION]}),
        ),
    ]
    with ThreadPoolExecutor(len(asks)) as pool:
        replies = list(pool.map(lambda a: chat(server, served_student.name, QUESTIONS[0], **a[0]), asks))
    for (_, want_cfg, source), reply in zip(asks, replies, strict=True):
        d = alone(student, QUESTIONS[0], want_cfg, source)
        message = reply["choices"][0]["message"]
        assert (message["content"], message["stop_reason"]) == (d.answer_text, d.stop_reason)
        assert [s["text"] for s in message["steps"]] == [s.text for s in d.steps]
    capped, free, gated, followed = replies[1], replies[2], replies[3], replies[4]
    assert capped["usage"]["completion_tokens"] == 5 and capped["choices"][0]["finish_reason"] == "length"
    assert free["choices"][0]["message"]["steps"] == [] or all(
        s["signal"] is None for s in free["choices"][0]["message"]["steps"]
    )
    assert gated["choices"][0]["message"]["stop_reason"] == "gate"
    assert [s["signal"] for s in followed["choices"][0]["message"]["steps"]] == [
        "Contrast and Concession",
        "Examples and Illustration",
        "Conclusion and Summary",
    ]


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"signal_source": "oracle"}, "signal_source"),
        ({"signal_source": "random"}, "signal_source"),  # no training traces given to the server
        ({"tau": 1.5}, "tau"),
        ({"signal_source": "golden"}, "signals"),
        ({"signal_source": "golden", "signals": ["wonder"]}, "signals"),
        ({"signals": ["contrast"]}, "signals"),
    ],
)
def test_settings_that_cannot_be_met_get_400(served_student, server, extra, field):
    body = {"model": served_student.name, "messages": [{"role": "user", "content": "B has 3 apples."}], **extra}
    r = httpx.post(f"{server}/chat/completions", json=body, timeout=60)
    assert r.status_code == 400 and f"'{field}'" in r.json()["error"]["message"]


def test_completions_endpoint_answers_and_streams(served_student, server):
    student = student_from_folder(served_student)
    body = {"model": served_student.name, "prompt": QUESTIONS[1]}
    reply = httpx.post(f"{server}/completions", json=body, timeout=60).json()
    with httpx.stream("POST", f"{server}/completions", json={**body, "stream": True}, timeout=60) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    chat_only = httpx.post(f"{server}/completions", json={**body, "model": "echo"}, timeout=60)
    d = alone(student, QUESTIONS[1], DECODE)
    choice = reply["object"], reply["choices"][0]
    assert choice[0] == "text_completion" and choice[1]["text"] == d.answer_text
    assert [s["text"] for s in choice[1]["steps"]] == [s.text for s in d.steps]
    assert "".join(e["choices"][0]["text"] for e in events) == d.answer_text
    assert [e["choices"][0]["rscaffold_step"]["text"] for e in events if "rscaffold_step" in e["choices"][0]] == [
        s.text for s in d.steps
    ]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert chat_only.status_code == 400


def test_a_full_queue_is_refused_with_503_and_retry_after(served_student):
    """Capacity is batch_size rows plus max_queue waiting; the engine is held so nothing moves."""
    chat_model = StudentChat(str(served_student), DECODE, batch_size=1, max_queue=1)
    engine = chat_model.engine
    engine.close()  # replaced by one that does not start until told
    chat_model.engine = engine = Engine(chat_model.student, chat_model.cfg, 1, 1, start=False)
    engine.submit("a", DECODE, lambda e: None)
    engine.submit("b", DECODE, lambda e: None)
    with pytest.raises(Busy):
        engine.submit("c", DECODE, lambda e: None)
    app = create_app(ServeConfig(), {"s": chat_model})
    body = {"model": "s", "messages": [{"role": "user", "content": "B has 3 apples."}]}

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/v1/chat/completions", json=body)

    r = asyncio.run(send())
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "busy" in r.json()["error"]["message"]
    done = threading.Event()
    results = []
    engine.waiting[0].on_event = lambda e: results.append(e)
    engine.waiting[1].on_event = lambda e: (results.append(e), done.set() if "done" in e else None)
    engine.start()
    assert done.wait(60)
    assert [("done" in e) for e in results if "step" not in e] == [True, True]
    engine.close()


def test_a_client_that_leaves_frees_its_row(served_student, monkeypatch):
    long = DECODE.model_copy(update={"max_steps": 400})
    seen = []
    original = Engine.submit

    def submit(self, *args, **kwargs):
        seen.append((self, original(self, *args, **kwargs)))
        return seen[-1][1]

    monkeypatch.setattr(Engine, "submit", submit)
    cfg = ServeConfig(port=0, student=str(served_student))
    body = {"model": served_student.name, "messages": [{"role": "user", "content": QUESTIONS[2]}], "stream": True}
    with serve_in_thread(cfg, decode=long) as url:
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if "rscaffold_step" in line:
                    break  # one step read, then the client goes away
        ((engine, ticket),) = seen
        idle = threading.Event()
        for _ in range(600):  # until the row has left (a finished decode would set ticket.finished)
            if engine.load()["decoding"] == 0:
                idle.set()
                break
            idle.wait(0.05)
    assert idle.is_set() and ticket.cancelled and not ticket.finished
