"""The content-addressed response cache shared by generate and judge (SQLite, WAL mode).

A key is the SHA-256 of everything that decides an answer: base URL, model, messages, sampling
parameters, prompt-template version (and the sample or attempt index). Each response is committed
the moment it arrives, so a crash loses at most the requests in flight and a rerun sends no request
that already has an answer. Items that failed after all their tries are kept in their own table
with the reason, so a rerun skips them unless asked to retry them (``--retry-failed``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rscaffold.config import CacheConfig
from rscaffold.schema import InputError, atomic_writer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, created REAL NOT NULL,
    request TEXT NOT NULL, response TEXT NOT NULL, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, created REAL NOT NULL,
    item TEXT NOT NULL, reason TEXT NOT NULL);
"""


def cache_key(parts: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (sorted keys, no spaces)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """One SQLite connection; every write is its own committed transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            # WAL: readers (cache stats, a judge) never block the writer; NORMAL sync is durable
            # against a process crash, which is the failure that matters here.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise InputError(f"{self.path}: not a usable cache database ({e})") from None

    def get(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(response, meta) stored under ``key``, or None."""
        row = self.db.execute("SELECT response, meta FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]))

    def put(self, key: str, kind: str, request: dict, response: dict, meta: dict) -> None:
        """Store one answer (and forget an earlier failure of the same request)."""
        row = (key, kind, str(request.get("model", "")), time.time(), _dumps(request), _dumps(response), _dumps(meta))
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            self.db.execute("DELETE FROM failures WHERE key = ?", (key,))

    def failure(self, key: str) -> str | None:
        """The reason an earlier run gave up on ``key``, or None."""
        row = self.db.execute("SELECT reason FROM failures WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put_failure(self, key: str, kind: str, model: str, item: dict, reason: str) -> None:
        row = (key, kind, model, time.time(), _dumps(item), reason)
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?)", row)

    def stats(self) -> dict[str, Any]:
        """Entries and failures per kind and model, and the file size."""
        out: dict[str, Any] = {"path": str(self.path), "bytes": self.path.stat().st_size}
        for table in ("responses", "failures"):
            rows = self.db.execute(f"SELECT kind, model, COUNT(*) FROM {table} GROUP BY kind, model").fetchall()
            out[table] = sum(r[2] for r in rows)
            out[f"{table}_by_model"] = {f"{kind}/{model}": n for kind, model, n in rows}
        return out

    def rows(self, table: str = "responses") -> Iterator[dict[str, Any]]:
        """Every row of ``table`` as a dict, streamed."""
        cursor = self.db.execute(f"SELECT * FROM {table} ORDER BY created")
        names = [d[0] for d in cursor.description]
        for row in cursor:
            record = dict(zip(names, row, strict=True))
            for field in ("request", "response", "meta", "item"):
                if field in record:
                    record[field] = json.loads(record[field])
            yield record

    def prune(self, older_than_days: float | None, model: str | None, kind: str | None, failures_only: bool) -> int:
        """Delete entries matching every given filter; returns how many went."""
        where, params = ["1 = 1"], []
        if older_than_days is not None:
            where.append("created < ?")
            params.append(time.time() - older_than_days * 86400)
        for column, value in (("model", model), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        tables = ("failures",) if failures_only else ("responses", "failures")
        with self.db:
            gone = sum(self.db.execute(f"DELETE FROM {t} WHERE {' AND '.join(where)}", params).rowcount for t in tables)
        self.db.execute("VACUUM")
        return gone

    def close(self) -> None:
        self.db.close()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ----------------------------------------------------------------------------- the command


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold cache stats|export|prune``."""
    parser.add_argument("action", choices=["stats", "export", "prune"], help="what to do with the cache")
    parser.add_argument("--path", help="cache file (cache.path)")
    parser.add_argument("--output", type=Path, help="export: JSONL file to write (default stdout)")
    parser.add_argument("--failures", action="store_true", help="export or prune the failures table only")
    parser.add_argument("--older-than-days", type=float, help="prune: entries older than this")
    parser.add_argument("--model", help="prune: entries of this model only")
    parser.add_argument("--kind", choices=["generate", "judge"], help="prune: entries of this kind only")


def cmd_cache(args: argparse.Namespace, cfg: CacheConfig) -> int:
    """``rscaffold cache``: stats, export or prune the cache of ``cache.path`` (or ``--path``)."""
    path = Path(args.path or cfg.path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no cache there")
    cache = ResponseCache(path)
    try:
        if args.action == "stats":
            print(json.dumps(cache.stats(), indent=2))
        elif args.action == "export":
            _export(cache, "failures" if args.failures else "responses", args.output)
        else:
            gone = cache.prune(args.older_than_days, args.model, args.kind, args.failures)
            print(json.dumps({"pruned": gone}))
    finally:
        cache.close()
    return 0


def _export(cache: ResponseCache, table: str, output: Path | None) -> None:
    if output is None:
        for row in cache.rows(table):
            print(_dumps(row))
        return
    with atomic_writer(output) as f:
        for row in cache.rows(table):
            f.write(_dumps(row) + "\n")
