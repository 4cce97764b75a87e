"""The real client against the real server on a loopback port: faults, SIGKILL and resume, key hygiene."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rscaffold import generate
from rscaffold.config import ApiTeacherConfig, Config, FaultConfig, GenerateConfig, ServeConfig, TestbedConfig
from rscaffold.schema import Trace, read_jsonl, write_jsonl
from rscaffold.serve import serve_in_thread
from rscaffold.serve.app import fingerprint
from rscaffold.testbed.problems import make_splits


def run_generate(questions: Path, out: Path, api: ApiTeacherConfig, filter_wrong: bool = True) -> dict:
    """The generate stage from file to file with the openai teacher."""
    gen = GenerateConfig(teacher="openai", api=api, filter_wrong=filter_wrong)
    return generate.run_file(Config(generate=gen), questions, out)


ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-7f3a9c-DO-NOT-LEAK-0b1e5d"
FAULTS = FaultConfig(  # 20% of requests fail, 4% each way
    share_429=0.04, retry_after_s=0.01, share_500=0.04, share_truncated=0.04, share_garbage=0.04, share_dropped=0.04
)


@pytest.fixture(scope="module")
def questions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("q") / "questions.jsonl"
    write_jsonl(path, make_splits(TestbedConfig(), 0)["train"][:200])
    return path


def _stats(url: str, detail: bool = False) -> dict:
    """The server's request counter (with the test key: a server with a token guards every route)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.get(f"{url}/_stats", params={"detail": detail}, headers=headers).raise_for_status().json()


def test_200_questions_with_20_percent_faults_all_answered_or_failed_with_reason(questions, tmp_path):
    cfg = ServeConfig(port=0, questions=str(questions), faults=FAULTS)
    with serve_in_thread(cfg) as url:
        api = ApiTeacherConfig(base_url=url, cache=str(tmp_path / "c.sqlite"), backoff_base_s=0.01, max_tries=6)
        summary = run_generate(questions, tmp_path / "t.jsonl", api, filter_wrong=False)
        stats = _stats(url)
    answered = {t.question_id for t in read_jsonl(tmp_path / "t.jsonl", Trace)}
    path = tmp_path / "t.jsonl.failures.jsonl"  # written only when an item failed
    failures = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    assert len(answered) + len(failures) == 200 == summary["generated"] + summary["failed"]
    assert not answered & {f["question_id"] for f in failures}
    assert all(f["reason"] for f in failures)
    assert stats["by_status"]["429"] + stats["by_status"]["500"] + stats["by_status"]["200-broken"] > 20
    assert summary["ledger"]["retries"] > 20 and stats["repeats"] == 0


def test_failed_items_are_recorded_skipped_on_rerun_and_retried_on_request(questions, tmp_path):
    cfg = ServeConfig(port=0, questions=str(questions), faults=FAULTS)
    with serve_in_thread(cfg) as url:
        api = ApiTeacherConfig(base_url=url, cache=str(tmp_path / "c.sqlite"), backoff_base_s=0.01, max_tries=1)
        first = run_generate(questions, tmp_path / "t.jsonl", api, filter_wrong=False)
        reasons = {json.loads(x)["reason"].split(",")[0] for x in (tmp_path / "t.jsonl.failures.jsonl").open()}
        assert 15 <= first["failed"] <= 70 and first["generated"] == 200 - first["failed"]
        assert {"HTTP 429", "HTTP 500", "connection error (RemoteProtocolError)"} <= reasons
        assert any(r.startswith("unparseable body") for r in reasons)
        received = _stats(url)["received"]
        again = run_generate(questions, tmp_path / "t.jsonl", api, filter_wrong=False)
        assert again["failed"] == first["failed"] and _stats(url)["received"] == received
        retry = api.model_copy(update={"retry_failed": True, "max_tries": 8})
        final = run_generate(questions, tmp_path / "t.jsonl", retry, filter_wrong=False)
        assert final["failed"] == 0 and final["generated"] == 200
        assert _stats(url)["repeats"] == 0
    assert not (tmp_path / "t.jsonl.failures.jsonl").exists(), "the failures file lists items since answered"
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM failures").fetchone() == (0,), "the cache lists them as failed"


def _generate_process(questions: Path, out: Path, url: str, cache: Path, log: Path) -> subprocess.Popen:
    """``rscaffold generate --teacher openai`` as a separate process."""
    options = [f"base_url={url}", f"cache={cache}", "api_key_env=RSCAFFOLD_TEST_KEY", "max_concurrency=4"]
    options.append("backoff_base_s=0.01")
    cmd = ["-m", "rscaffold.cli", "generate", "--teacher", "openai", "--input", str(questions)]
    cmd += ["--output", str(out), "generate.filter_wrong=false", *(f"generate.api.{o}" for o in options)]
    env = {**os.environ, "RSCAFFOLD_TEST_KEY": KEY}
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env, stdout=f, stderr=f)


def _committed(cache: Path) -> set[str]:
    """Fingerprints (as the server computes them) of the requests whose answers the cache holds."""
    try:
        with sqlite3.connect(cache) as db:
            return {fingerprint(json.loads(r[0])) for r in db.execute("SELECT request FROM responses")}
    except sqlite3.OperationalError:  # the client is still creating the tables
        return set()


def _wait_for_rows(cache: Path, more_than: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.exists() and len(_committed(cache)) > more_than:
            return
        time.sleep(0.01)


@pytest.mark.slow  # a child process killed and restarted: 6 s
def test_sigkill_and_resume_answers_each_question_once_and_never_resends(questions, tmp_path, monkeypatch):
    monkeypatch.setenv("RSCAFFOLD_TEST_KEY", KEY)
    small = tmp_path / "q60.jsonl"
    small.write_text("".join(questions.read_text().splitlines(keepends=True)[:60]))
    cache, out, log = tmp_path / "cache.sqlite", tmp_path / "run" / "traces.jsonl", tmp_path / "log.txt"
    rng = random.Random(7)
    cfg = ServeConfig(port=0, questions=str(small), token_env="RSCAFFOLD_TEST_KEY", faults=FaultConfig(delay_ms=30))
    with serve_in_thread(cfg) as url:
        snapshots = []
        for _ in range(3):
            proc = _generate_process(small, out, url, cache, log)
            done = len(_committed(cache)) if cache.exists() else 0
            _wait_for_rows(cache, done + rng.randint(3, 12), proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            snapshots.append((_committed(cache), _stats(url, detail=True)["fingerprints"]))
        assert not out.exists(), "a killed run must leave no partial output"
        assert _generate_process(small, out, url, cache, log).wait(60) == 0
        final = _stats(url, detail=True)
        assert _generate_process(small, out, url, cache, log).wait(60) == 0
        assert _stats(url)["received"] == final["received"], "a full rerun must send no request"
    ids = [t.question_id for t in read_jsonl(out, Trace)]
    assert sorted(ids) == sorted({json.loads(x)["id"] for x in small.read_text().splitlines()}) and len(ids) == 60
    for committed, counts in snapshots:
        assert all(final["fingerprints"][fp] == counts[fp] for fp in committed), "answered request sent again"
    assert final["repeats"] <= 3 * 4, "only requests in flight at a kill may be repeated"
    assert final["by_status"].get("401") is None, "the key must reach the server"
    _assert_no_key(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_unwind_like_ctrl_c(questions, tmp_path, sig):
    """Stopped by the signal a service manager or a closed terminal sends: no output, no temporary file,
    one line on stderr, and 128 + the signal number as the exit status."""
    cache, out, log = tmp_path / "cache.sqlite", tmp_path / "run" / "traces.jsonl", tmp_path / "log.txt"
    with serve_in_thread(ServeConfig(port=0, questions=str(questions), faults=FaultConfig(delay_ms=30))) as url:
        proc = _generate_process(questions, out, url, cache, log)
        _wait_for_rows(cache, 4, proc)
        assert proc.poll() is None, log.read_text()[-2000:]
        proc.send_signal(sig)
        assert proc.wait(60) == 128 + sig
    assert list(out.parent.iterdir()) == [], "no output, no temporary file, no empty failures file"
    lines = log.read_text().splitlines()
    assert lines[-1] == f"rscaffold: terminated ({sig.name}); no partial output was written"
    assert "Traceback" not in log.read_text()


def _assert_no_key(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"API key leaked into {path}"


def test_api_key_is_never_written_or_logged(questions, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RSCAFFOLD_TEST_KEY", KEY)
    caplog.set_level("DEBUG")
    cfg = ServeConfig(port=0, questions=str(questions), token_env="RSCAFFOLD_TEST_KEY", faults=FAULTS)
    with serve_in_thread(cfg) as url:
        api = ApiTeacherConfig(
            base_url=url, cache=str(tmp_path / "c.sqlite"), api_key_env="RSCAFFOLD_TEST_KEY", backoff_base_s=0.01
        )
        summary = run_generate(questions, tmp_path / "t.jsonl", api)
        wrong = api.model_copy(update={"api_key_env": "RSCAFFOLD_NO_SUCH_VAR", "cache": str(tmp_path / "d.sqlite")})
        refused = run_generate(questions, tmp_path / "u.jsonl", wrong)
    assert summary["generated"] == 200 and refused["failed"] == 200
    assert "HTTP 401" in (tmp_path / "u.jsonl.failures.jsonl").read_text()
    assert KEY not in caplog.text
    _assert_no_key(tmp_path)


def test_cli_generate_with_the_openai_teacher(questions, tmp_path):
    with serve_in_thread(ServeConfig(port=0, questions=str(questions))) as url:
        cmd = [sys.executable, "-m", "rscaffold.cli", "generate", "--teacher", "openai"]
        cmd += ["--input", str(questions), "--output", str(tmp_path / "t.jsonl")]
        cmd += [f"generate.api.base_url={url}", "generate.api.model=scripted", f"generate.api.cache={tmp_path / 'c'}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        received = _stats(url)["received"]
        assert subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=120).returncode == 0
        assert _stats(url)["received"] == received == 200
    assert len(list(read_jsonl(tmp_path / "t.jsonl", Trace))) > 150
