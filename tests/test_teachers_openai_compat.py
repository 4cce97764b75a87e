"""The OpenAI-compatible client: thinking fields, answers, limits, retries, samples, ledger."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import httpx
import pytest

from rscaffold import generate
from rscaffold.answers import answers_match, extract_final_answer
from rscaffold.config import ApiTeacherConfig, Config, FaultConfig, GenerateConfig, ServeConfig, TestbedConfig
from rscaffold.schema import Question, Trace, read_jsonl, write_jsonl
from rscaffold.serve import serve_in_thread
from rscaffold.teachers import build_messages, split_reasoning, strip_prompt
from rscaffold.teachers.openai_compat import ApiClient, ApiTeacher, TokenBucket
from rscaffold.testbed.problems import make_splits


def run_generate(questions: Path, out: Path, api: ApiTeacherConfig, filter_wrong: bool = True) -> dict:
    """The generate stage from file to file with the openai teacher."""
    gen = GenerateConfig(teacher="openai", api=api, filter_wrong=filter_wrong)
    return generate.run_file(Config(generate=gen), questions, out)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"reasoning_content": "think", "content": "ans"}, ("think", "ans", False)),
        ({"reasoning": "think", "content": "ans"}, ("think", "ans", False)),
        ({"content": "<think>think</think>ans"}, ("think", "ans", False)),
        ({"content": "think</think>ans"}, ("think", "ans", False)),
        ({"content": "<think>cut off"}, ("cut off", "", True)),
        ({"content": "just an answer"}, ("", "just an answer", False)),
        ({"reasoning_content": None, "content": None}, ("", "", False)),
    ],
)
def test_thinking_from_each_place_servers_put_it(message, expected):
    assert split_reasoning(message) == expected


@pytest.mark.parametrize(
    ("answer_text", "gold", "match"),
    [
        ("So 1,200.\n###Answer: \\boxed{1,200}", "1200", True),
        ("###Answer: \\boxed{12.0}", "12", True),
        ("###Answer: \\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", True),
        ("###Answer: \\boxed{\\text{(B)}}", "B", True),
        ("The answer is (c).", "C", True),
        ("###Answer: \\boxed{Yes}", "yes", True),
        ("###Answer: \\boxed{True}", "yes", True),
        ("###Answer: \\boxed{no}", "yes", False),
        ("###Answer: \\boxed{13}", "12", False),
        ("###Answer: \\boxed{x^{2}+1}", "x^{2} + 1", True),
    ],
)
def test_rejection_filter_compares_numbers_latex_choices_yes_no(answer_text, gold, match):
    assert answers_match(extract_final_answer(answer_text), gold) is match


def test_no_answer_or_no_gold_is_undecided():
    assert extract_final_answer("I could not finish") is None
    assert answers_match(None, "1") is None and answers_match("1", None) is None


def test_prompt_round_trip():
    messages = build_messages("paper-v1", "How many apples?")
    assert "\\boxed{answer}" in messages[-1]["content"] and strip_prompt(messages[-1]["content"]) == "How many apples?"


def test_token_bucket_waits_when_spent(monkeypatch):
    """On a fake clock: the waits the bucket asks for, not wall time."""
    from rscaffold.teachers import openai_compat

    now, waits = [0.0], []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(openai_compat.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(openai_compat.asyncio, "sleep", sleep)

    async def run() -> None:
        bucket = TokenBucket(per_minute=120)  # 2 a second
        await bucket.take(120)
        bucket.debit(0.5)  # an overdraft (tokens used beyond the estimate) delays the next taker too
        await bucket.take(1)

    asyncio.run(run())
    assert sum(waits) == pytest.approx(0.75)  # (0.5 overdrawn + 1 taken) at 2 a second


@pytest.fixture(scope="module")
def questions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Question]]:
    qs = make_splits(TestbedConfig(), 0)["train"][:40]
    path = tmp_path_factory.mktemp("client") / "questions.jsonl"
    write_jsonl(path, qs)
    return path, qs


def _teacher(url: str, tmp_path: Path, **kw) -> ApiTeacher:
    return ApiTeacher(ApiTeacherConfig(base_url=url, cache=str(tmp_path / "c.sqlite"), backoff_base_s=0.01, **kw))


def test_retry_after_is_honoured_then_the_item_fails_with_its_reason(questions, tmp_path, monkeypatch):
    path, qs = questions
    faults = FaultConfig(share_429=1.0, retry_after_s=0.3)
    with serve_in_thread(ServeConfig(port=0, questions=str(path), faults=faults)) as url:
        teacher = _teacher(url, tmp_path, max_tries=2)
        waits = []
        backoff = ApiClient._backoff
        monkeypatch.setattr(ApiClient, "_backoff", lambda self, a, r: waits.append(backoff(self, a, r)) or waits[-1])
        assert list(teacher.generate(qs[:1])) == []
    assert len(waits) == 1 and 0.3 <= waits[0] <= 0.3 + 0.01 / 10  # Retry-After, plus a little jitter
    assert teacher.failures == [{"question_id": qs[0].id, "sample": 0, "reason": "HTTP 429, after 2 tries"}]


def test_client_errors_are_not_retried(questions, tmp_path):
    path, _ = questions
    with serve_in_thread(ServeConfig(port=0, questions=str(path))) as url:
        teacher = _teacher(url, tmp_path, max_tries=5)
        assert list(teacher.generate([Question(id="x", text="not a testbed question")])) == []
        assert httpx.get(f"{url}/_stats").json()["received"] == 1
    assert (
        teacher.failures[0]["reason"].startswith("HTTP 400: ") and "unknown question" in teacher.failures[0]["reason"]
    )


def test_timeouts_and_dropped_connections_are_retried_then_recorded(questions, tmp_path):
    path, qs = questions
    with serve_in_thread(ServeConfig(port=0, questions=str(path), faults=FaultConfig(delay_ms=400))) as url:
        slow = _teacher(url, tmp_path, max_tries=2, timeout_s=0.05)
        assert list(slow.generate(qs[:1])) == []
    closed = _teacher(url, tmp_path / "closed", max_tries=2)  # the server is gone now
    assert list(closed.generate(qs[:1])) == []
    assert slow.failures[0]["reason"] == "timeout (ReadTimeout), after 2 tries"
    assert closed.failures[0]["reason"] == "connection error (ConnectError), after 2 tries"


def test_several_samples_per_question_and_bounded_concurrency(questions, tmp_path, monkeypatch):
    path, qs = questions
    with serve_in_thread(ServeConfig(port=0, questions=str(path), faults=FaultConfig(delay_ms=50))) as url:
        teacher = _teacher(url, tmp_path, n=3, seed=10, max_concurrency=4)
        in_flight = []
        limits = ApiClient._limits

        async def counted(self, body):
            in_flight.append(sum(self.busy) + 1)  # requests being sent, this one included
            await limits(self, body)

        monkeypatch.setattr(ApiClient, "_limits", counted)
        traces = list(teacher.generate(qs[:4]))
        stats = httpx.get(f"{url}/_stats").json()
    assert len(traces) == 12 and stats["answered"] == 12 and stats["repeats"] == 0
    assert max(in_flight) == 4, "at most 4 requests in flight, and 4 when there is work for them"
    samples = {(t.question_id, t.metadata["sample"]) for t in traces}
    assert samples == {(q.id, i) for q in qs[:4] for i in range(3)}
    by_sample = {t.metadata["sample"]: t.thinking for t in traces if t.question_id == qs[0].id}
    assert len(set(by_sample.values())) > 1, "each sample has its own seed"


def test_run_generate_filters_counts_and_prices(questions, tmp_path):
    path, _ = questions
    with serve_in_thread(ServeConfig(port=0, questions=str(path))) as url:
        cfg = ApiTeacherConfig(
            base_url=url, cache=str(tmp_path / "c.sqlite"), price_input_per_m=1, price_output_per_m=2
        )
        summary = run_generate(path, tmp_path / "t.jsonl", cfg)
    kept = list(read_jsonl(tmp_path / "t.jsonl", Trace))
    assert summary["generated"] == 40 == summary["kept"] + summary["dropped_wrong"] and len(kept) == summary["kept"]
    assert summary["dropped_wrong"] > 0 and all(answers_match(t.final_answer, t.gold) for t in kept)
    ledger = summary["ledger"]
    expected = (ledger["prompt_tokens"] * 1 + ledger["completion_tokens"] * 2) / 1e6
    assert ledger["cost_usd"] == pytest.approx(expected, abs=1e-4) and ledger["requests"] == 40
    assert all(t.teacher == "scripted" and t.metadata["usage"]["total_tokens"] > 0 for t in kept)
    assert all(t.steps == [] for t in kept), "traces from an API carry no true signals"


def test_iterate_async_closes_the_iterator_when_the_caller_stops_early():
    import asyncio
    import threading

    from rscaffold.teachers.openai_compat import iterate_async

    closed = []

    async def numbers():
        try:
            for i in range(10_000):
                await asyncio.sleep(0)
                yield i
        finally:
            closed.append(True)

    items = iterate_async(numbers(), buffer=4)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed == [True]
    assert not any(t.name == "rscaffold-client-loop" for t in threading.enumerate())


def test_iterate_async_hands_errors_to_the_caller_and_keeps_working_while_it_waits():
    import asyncio

    from rscaffold.teachers.openai_compat import iterate_async

    produced = []

    async def slow_then_fail():
        for i in range(3):
            produced.append(i)
            yield i
        await asyncio.sleep(0)
        raise ValueError("bad record")

    items = iterate_async(slow_then_fail(), buffer=8)
    assert next(items) == 0
    time.sleep(0.2)  # the caller is busy: the loop goes on producing into the buffer meanwhile
    assert produced == [0, 1, 2]
    assert list(itertools.islice(items, 2)) == [1, 2]
    with pytest.raises(ValueError, match="bad record"):
        next(items)


def test_a_key_echoed_in_an_error_body_is_masked_in_the_reason_log_and_cache(tmp_path, monkeypatch, caplog):
    key = "sk-T3st0nlyEch0edBackByTheServer"
    monkeypatch.setenv("RSCAFFOLD_TEST_KEY", key)
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401, json={"error": f"invalid key {request.headers['authorization']}"})

    real = httpx.AsyncClient
    monkeypatch.setattr(httpx, "AsyncClient", lambda **kw: real(transport=httpx.MockTransport(handler), **kw))
    teacher = _teacher("http://api.example.com/v1", tmp_path, api_key_env="RSCAFFOLD_TEST_KEY")
    assert list(teacher.generate([Question(id="q", text="1 + 1?")])) == []
    assert seen == [f"Bearer {key}"], "the key goes into the Authorization header, once (4xx is not retried)"
    [failure] = teacher.failures
    assert failure["reason"].startswith("HTTP 401: ") and "invalid key Bearer ***" in failure["reason"]
    assert key not in caplog.text
    assert [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()] == []
