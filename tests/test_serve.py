"""`rscaffold serve`: the OpenAI-compatible endpoints, streaming, the bearer token, faults, the counter,
refusals to serve open by accident, and 4xx answers to malformed requests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rscaffold import cli
from rscaffold.config import ApiTeacherConfig, FaultConfig, ScriptedConfig, ServeConfig, TestbedConfig
from rscaffold.schema import Question, write_jsonl
from rscaffold.serve import cmd_serve, serve_in_thread
from rscaffold.teachers import build_messages
from rscaffold.teachers.openai_compat import ApiTeacher
from rscaffold.testbed.problems import make_splits
from rscaffold.testbed.teacher import ScriptedTeacher

ROOT = Path(__file__).resolve().parent.parent
HTTP = httpx.Client(trust_env=False)  # one client: making one costs about 40 ms (certificates)


@pytest.fixture(scope="module")
def questions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Question]]:
    qs = make_splits(TestbedConfig(), 0)["test_id"][:10]
    path = tmp_path_factory.mktemp("serve") / "questions.jsonl"
    write_jsonl(path, qs)
    return path, qs


def _ask(url: str, q: Question, headers: dict | None = None, **extra) -> httpx.Response:
    body = {"model": "scripted", "messages": build_messages("paper-v1", q.text), **extra}
    return HTTP.post(f"{url}/chat/completions", json=body, headers=headers)


def test_models_and_a_scripted_answer_as_deepseek_sends_it(questions):
    path, qs = questions
    with serve_in_thread(ServeConfig(port=0, questions=str(path))) as url:
        models = httpx.get(f"{url}/models").json()
        reply = _ask(url, qs[0]).json()
        bad = httpx.post(
            f"{url}/chat/completions", json={"model": "scripted", "messages": [{"role": "user", "content": "?"}]}
        )
        unknown = httpx.post(f"{url}/chat/completions", json={"model": "gpt-9", "messages": []})
    assert {"scripted", "scripted-judge", "echo"} <= {m["id"] for m in models["data"]}
    trace = ScriptedTeacher(ScriptedConfig(), 0).trace(qs[0])
    message = reply["choices"][0]["message"]
    assert message["reasoning_content"] == trace.thinking and message["content"] == trace.answer_text
    assert reply["usage"]["completion_tokens"] > reply["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert bad.status_code == 400 and "unknown question" in bad.json()["error"]["message"]
    assert unknown.status_code == 404


def test_streaming_deltas_join_to_the_same_answer(questions):
    path, qs = questions
    with serve_in_thread(ServeConfig(port=0, questions=str(path))) as url:
        plain = _ask(url, qs[1]).json()["choices"][0]["message"]
        events = _ask(url, qs[1], stream=True, stream_options={"include_usage": True}).text.split("\n\n")
    datas = [e.removeprefix("data: ") for e in events if e.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    joined = {k: "".join(c["choices"][0]["delta"].get(k, "") for c in chunks) for k in ("reasoning_content", "content")}
    assert joined == {k: plain[k] for k in joined} and chunks[-1]["usage"]["total_tokens"] > 0


def test_bearer_token_is_required_when_configured(questions, monkeypatch):
    path, qs = questions
    monkeypatch.setenv("RSCAFFOLD_SERVE_TOKEN", "tok-123")
    with serve_in_thread(ServeConfig(port=0, questions=str(path), token_env="RSCAFFOLD_SERVE_TOKEN")) as url:
        assert _ask(url, qs[0]).status_code == 401
        assert _ask(url, qs[0], headers={"Authorization": "Bearer nope"}).status_code == 401
        assert _ask(url, qs[0], headers={"Authorization": "Bearer tok-123"}).status_code == 200
        stats = httpx.get(f"{url}/_stats", headers={"Authorization": "Bearer tok-123"}).json()
        assert stats["by_status"] == {"401": 2, "200": 1}


def test_every_route_needs_the_token_and_there_are_no_docs(questions, monkeypatch):
    path, _ = questions
    monkeypatch.setenv("RSCAFFOLD_SERVE_TOKEN", "tok-123")
    good = {"Authorization": "Bearer tok-123"}
    with serve_in_thread(ServeConfig(port=0, questions=str(path), token_env="RSCAFFOLD_SERVE_TOKEN")) as url:
        root = url.removesuffix("/v1")
        stats = [HTTP.get(f"{url}/_stats", params={"detail": True}, headers=h) for h in ({}, good)]
        models = HTTP.get(f"{url}/models")
        docs = [HTTP.get(f"{root}{route}", headers=good).status_code for route in ("/docs", "/redoc", "/openapi.json")]
    assert stats[0].status_code == 401 and "fingerprints" not in stats[0].text
    assert stats[1].status_code == 200 and "fingerprints" in stats[1].json()
    assert models.status_code == 401 and docs == [404, 404, 404]


@pytest.fixture(scope="module")
def open_server(questions):
    with serve_in_thread(ServeConfig(port=0, questions=str(questions[0]))) as url:
        yield url


ECHO = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "body",
    [
        {"model": ["x"], "messages": []},
        b"{not json",
        b"\xff\xfe\x00",
        [ECHO],
        {"model": "echo", "messages": "hi"},
        {"model": "echo", "messages": [1]},
        {"model": "echo", "messages": [{"role": "user"}]},
        {**ECHO, "max_tokens": "lots"},
        {**ECHO, "temperature": "hot"},
        {**ECHO, "stream": "yes"},
        {**ECHO, "stream": True, "stream_options": "usage"},
    ],
)
def test_malformed_requests_get_a_4xx_with_a_json_error(open_server, body):
    sent = {"content": body} if isinstance(body, bytes) else {"json": body}
    reply = HTTP.post(f"{open_server}/chat/completions", **sent)
    assert 400 <= reply.status_code < 500 and reply.json()["error"]["type"] == "invalid_request_error"
    assert "Traceback" not in reply.text


def _cli_serve(monkeypatch, *argv: str) -> tuple[int, list[dict]]:
    """``rscaffold serve ARGV`` in this process, uvicorn stubbed: the exit status and the binds it asked for."""
    import uvicorn

    started: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # what main() would set for itself
    return cli.main(["serve", *argv]), started


@pytest.mark.parametrize("value", [None, ""])
def test_a_named_token_variable_unset_or_empty_refuses_to_start(monkeypatch, capsys, value):
    if value is None:
        monkeypatch.delenv("RSCAFFOLD_NO_TOKEN", raising=False)
    else:
        monkeypatch.setenv("RSCAFFOLD_NO_TOKEN", value)
    rc, started = _cli_serve(monkeypatch, "--token-env", "RSCAFFOLD_NO_TOKEN")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not started and len(err) == 1 and "RSCAFFOLD_NO_TOKEN" in err[0]


def test_beyond_loopback_needs_a_token_or_insecure(monkeypatch, capsys, caplog):
    refused, _ = _cli_serve(monkeypatch, "--host", "0.0.0.0")
    err = capsys.readouterr().err.strip().splitlines()
    assert refused == 2 and len(err) == 1 and "--insecure" in err[0]
    assert _cli_serve(monkeypatch, "--host", "::1")[0] == 0 and not caplog.records, "loopback: no token needed"
    monkeypatch.setenv("RSCAFFOLD_SERVE_TOKEN", "tok-123")
    assert _cli_serve(monkeypatch, "--host", "0.0.0.0", "--token-env", "RSCAFFOLD_SERVE_TOKEN")[0] == 0
    assert not caplog.records
    for argv in (["--insecure"], ["serve.insecure=true"]):
        caplog.clear()
        rc, started = _cli_serve(monkeypatch, "--host", "0.0.0.0", *argv)
        assert rc == 0 and started[0]["host"] == "0.0.0.0"
        assert [r.levelname for r in caplog.records] == ["WARNING"] and "WITHOUT AUTHENTICATION" in caplog.text


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_the_command_checks_the_port_as_the_config_does(monkeypatch, capsys, port):
    rc, started = _cli_serve(monkeypatch, "--port", port)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not started and len(err) == 1 and "--port" in err[0]


def test_faults_are_injected_and_counted(questions):
    path, qs = questions
    faults = FaultConfig(share_429=0.25, retry_after_s=3, share_500=0.25, share_truncated=0.25, share_garbage=0.25)
    with serve_in_thread(ServeConfig(port=0, questions=str(path), faults=faults)) as url:
        replies = [_ask(url, qs[i % 10]) for i in range(80)]
        stats = httpx.get(f"{url}/_stats").json()
    codes = [r.status_code for r in replies]
    assert {429, 500, 200} == set(codes) and stats["received"] == 80 and stats["answered"] == 0
    assert all(r.headers["retry-after"] == "3.0" for r in replies if r.status_code == 429)
    for r in replies:
        if r.status_code == 200:
            with pytest.raises(ValueError):
                r.json()
    assert stats["by_status"]["200-broken"] == codes.count(200)


def test_delay_and_repeat_counter(questions):
    path, qs = questions
    with serve_in_thread(ServeConfig(port=0, questions=str(path), faults=FaultConfig(delay_ms=50))) as url:
        first = _ask(url, qs[0])
        again = _ask(url, qs[0])
        stats = httpx.get(f"{url}/_stats", params={"detail": True}).json()
    assert first.elapsed.total_seconds() >= 0.05 and first.json()["choices"] == again.json()["choices"]
    assert stats["answered"] == 2 and stats["repeats"] == 1 and list(stats["fingerprints"].values()) == [2]


@pytest.mark.slow  # starts `rscaffold serve` as a process (about 5 s)
def test_the_command_binds_loopback_and_serves(questions, tmp_path):
    """``rscaffold serve``, as a separate process."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path, _ = questions
    proc = subprocess.Popen(
        [sys.executable, "-m", "rscaffold.cli", "serve", "--port", str(port), "--questions", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Wait for uvicorn's line that it listens, not for a time: a loaded machine takes long to start it.
        seen = []
        while not any("running on" in line for line in seen[-1:]):
            line = proc.stderr.readline().decode()
            assert line, "the server exited before listening: " + "".join(seen)
            seen.append(line)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=60).json()
        assert "scripted" in {m["id"] for m in models["data"]}
    finally:
        proc.terminate()
        proc.wait(10)
    assert callable(cmd_serve)


def _tiny_lm(folder: Path) -> Path:
    """A one-layer Llama with a character tokenizer and a chat template, built in code (no download)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2} | {c: i + 3 for i, c in enumerate([*map(chr, range(32, 127)), "\n"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: "
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    cfg.update({"num_attention_heads": 2, "num_key_value_heads": 2, "bos_token_id": 1, "eos_token_id": 2})
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_a_local_hf_model_as_teacher_and_behind_the_server(tmp_path):
    from rscaffold.config import HfTeacherConfig
    from rscaffold.teachers.hf_local import HfTeacher

    model = _tiny_lm(tmp_path / "tiny-lm")
    qs = [Question(id=f"q{i}", text=f"What is {i} + {i}?", gold=str(2 * i)) for i in range(3)]
    local = list(
        HfTeacher(HfTeacherConfig(model=str(model), max_new_tokens=8, batch_size=2, temperature=0)).generate(qs)
    )
    assert [t.question_id for t in local] == ["q0", "q1", "q2"] and all(t.answer_text for t in local)
    with serve_in_thread(ServeConfig(port=0, hf_model=str(model))) as url:
        api = ApiTeacherConfig(base_url=url, model="tiny-lm", max_tokens=8, temperature=0, cache=None)
        served = sorted(ApiTeacher(api).generate(qs), key=lambda t: t.question_id)
    assert [t.answer_text for t in served] == [t.answer_text for t in local], "greedy: same text both ways"
