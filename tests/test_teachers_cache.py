"""The content-addressed response cache and `rscaffold cache stats|export|prune`."""

from __future__ import annotations

import argparse
import json
import sqlite3

import pytest

from rscaffold.config import CacheConfig
from rscaffold.schema import InputError
from rscaffold.teachers.cache import ResponseCache, add_cache_arguments, cache_key, cmd_cache

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.6}


def test_key_is_canonical_and_covers_every_part():
    a = cache_key({"base_url": "u", "body": REQUEST, "version": "v1", "i": 0})
    b = cache_key({"i": 0, "version": "v1", "body": dict(reversed(REQUEST.items())), "base_url": "u"})
    assert a == b and len(a) == 64
    for change in ({"base_url": "u2"}, {"version": "v2"}, {"i": 1}, {"body": {**REQUEST, "temperature": 0.7}}):
        assert cache_key({"base_url": "u", "body": REQUEST, "version": "v1", "i": 0, **change}) != a


def test_put_get_persist_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "c.sqlite"
    cache = ResponseCache(path)
    cache.put("k", "generate", REQUEST, {"choices": []}, {"latency_s": 1.5})
    cache.close()
    again = ResponseCache(path)
    assert again.get("k") == ({"choices": []}, {"latency_s": 1.5}) and again.get("other") is None
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failure_is_remembered_until_an_answer_replaces_it(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_failure("k", "generate", "m", {"question_id": "q1"}, "HTTP 500, after 6 tries")
    assert cache.failure("k") == "HTTP 500, after 6 tries"
    cache.put("k", "generate", REQUEST, {"choices": []}, {})
    assert cache.failure("k") is None and cache.stats()["failures"] == 0


def test_not_a_database_is_an_input_error(tmp_path):
    (tmp_path / "c.sqlite").write_text("this is not sqlite, just text that is long enough to be read" * 20)
    with pytest.raises(InputError, match="not a usable cache"):
        ResponseCache(tmp_path / "c.sqlite")


def _filled(tmp_path) -> ResponseCache:
    cache = ResponseCache(tmp_path / "c.sqlite")
    for i in range(3):
        cache.put(f"g{i}", "generate", REQUEST, {"i": i}, {})
    cache.put("j0", "judge", {**REQUEST, "model": "judge-m"}, {"i": 9}, {})
    cache.put_failure("f0", "generate", "m", {"question_id": "q"}, "timeout")
    return cache


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cache_arguments(parser)
    return parser.parse_args(list(argv))


def test_stats_export_and_prune_commands(tmp_path, capsys):
    cache = _filled(tmp_path)
    cfg = CacheConfig(path=str(cache.path))
    assert cmd_cache(_args("stats"), cfg) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["responses"] == 4 and stats["failures"] == 1
    assert stats["responses_by_model"] == {"generate/m": 3, "judge/judge-m": 1}
    cmd_cache(_args("export", "--output", str(tmp_path / "out.jsonl")), cfg)
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["g0", "g1", "g2", "j0"] and rows[0]["request"] == REQUEST
    cmd_cache(_args("export", "--failures"), cfg)
    assert json.loads(capsys.readouterr().out)["reason"] == "timeout"
    cmd_cache(_args("prune", "--kind", "judge"), cfg)
    assert json.loads(capsys.readouterr().out) == {"pruned": 1}
    cmd_cache(_args("prune", "--failures"), cfg)
    cmd_cache(_args("prune", "--older-than-days", "1"), cfg)
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"pruned": 0}
    cmd_cache(_args("prune", "--model", "m"), cfg)
    with sqlite3.connect(cache.path) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0


def test_a_missing_cache_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no cache there"):
        cmd_cache(_args("stats", "--path", str(tmp_path / "none.sqlite")), CacheConfig())
