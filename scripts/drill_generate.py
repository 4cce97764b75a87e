"""Kill drill of the generate stage: `rscaffold generate --teacher openai` killed again and again.

Against `rscaffold serve` (in this process) answering with 20% injected faults and a delay per request,
the generate command runs as its own process, is killed at a random moment with SIGKILL (``--kills``
times) and SIGTERM (``--terms`` times), in random order, then runs to completion. It prints one line
per measure and exits 0 only if no question was lost, no trace duplicated and no temporary file left:

    lost: questions with no trace and no recorded failure (<out>.failures.jsonl)
    duplicated: traces of the same question and sample written twice
    re-sent: requests the server answered more than once (in flight at a kill, so bounded by
             kills x max_concurrency; the response cache makes every other answer survive a kill)
    temp files left: .*.tmp files anywhere in the drill's folder after the final run

    python scripts/drill_generate.py [--questions 200] [--kills 10] [--terms 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from rscaffold.config import FaultConfig, ServeConfig, TestbedConfig
from rscaffold.schema import Trace, read_jsonl, write_jsonl
from rscaffold.serve import serve_in_thread
from rscaffold.testbed.problems import make_splits

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 4
STEP = 3
"""A run is killed after 1 to STEP new answers (a few more arrive before the signal)."""
KEY_ENV = "RSCAFFOLD_DRILL_KEY"


def faults(delay_ms: float, seed: int) -> FaultConfig:
    """20% of requests fail, 4% each way (as in tests/test_generate.py), every one delayed."""
    shares = dict(share_429=0.04, share_500=0.04, share_truncated=0.04, share_garbage=0.04, share_dropped=0.04)
    return FaultConfig(**shares, retry_after_s=0.01, delay_ms=delay_ms, delay_jitter_ms=delay_ms, seed=seed)


def generate_process(questions: Path, out: Path, url: str, cache: Path, log: Path) -> subprocess.Popen:
    """``rscaffold generate --teacher openai``, with the options of tests/test_generate.py."""
    options = [f"base_url={url}", f"cache={cache}", f"api_key_env={KEY_ENV}", f"max_concurrency={CONCURRENCY}"]
    options.append("backoff_base_s=0.01")
    cmd = [sys.executable, "-m", "rscaffold.cli", "generate", "--teacher", "openai", "--input", str(questions)]
    cmd += ["--output", str(out), "generate.filter_wrong=false", *(f"generate.api.{o}" for o in options)]
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=f)


def cached(cache: Path) -> int:
    """Answers the response cache holds (committed by the client the moment each arrives)."""
    try:
        with sqlite3.connect(cache) as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or being created
        return 0


def kill_at_random(proc: subprocess.Popen, sig: signal.Signals, cache: Path, rng: random.Random, most: int) -> int:
    """Wait until the run has cached a random number of new answers (so it is mid-work; at most ``most``
    in the cache, so that it cannot finish first), then a random few milliseconds more (mid-request),
    and send ``sig``; returns the exit status."""
    target = min(cached(cache) + rng.randint(1, STEP), most)
    deadline = time.monotonic() + 120
    while proc.poll() is None and cached(cache) < target and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.05))
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait()


def measures(questions: Path, out: Path, folder: Path, stats: dict) -> dict[str, int]:
    ids = [json.loads(line)["id"] for line in questions.read_text().splitlines()]
    traces: Counter[tuple[str, int]] = Counter()
    if out.exists():
        traces.update((t.question_id, t.metadata.get("sample", 0)) for t in read_jsonl(out, Trace))
    failures_path = out.with_name(out.name + ".failures.jsonl")
    lines = failures_path.read_text().splitlines() if failures_path.exists() else []
    failed = {json.loads(line)["question_id"] for line in lines}
    answered = {q for q, _ in traces}
    return {
        "lost": sum(1 for q in ids if q not in answered and q not in failed),
        "duplicated": sum(n - 1 for n in traces.values() if n > 1),
        "re-sent": stats["repeats"],
        "temp files left": len(temp_files(folder)),
        "failed (recorded with a reason)": len(failed - answered),
    }


def temp_files(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.tmp"))


def drill(args: argparse.Namespace, folder: Path) -> int:
    rng = random.Random(args.seed)
    os.environ[KEY_ENV] = f"sk-drill-{rng.getrandbits(64):016x}"
    questions, out = folder / "questions.jsonl", folder / "run" / "traces.jsonl"
    cache, log = folder / "cache.sqlite", folder / "generate.log"
    sizes = TestbedConfig(train=args.questions, test_id=1, test_ood=0, test_surface=0, perturbed_groups=0)
    write_jsonl(questions, make_splits(sizes, args.seed)["train"])
    signals = [signal.SIGKILL] * args.kills + [signal.SIGTERM] * args.terms
    rng.shuffle(signals)
    most = args.questions - 2 * CONCURRENCY  # answers arriving between the target and the kill
    cfg = ServeConfig(port=0, questions=str(questions), token_env=KEY_ENV, faults=faults(args.delay_ms, args.seed))
    exits: Counter[str] = Counter()
    after_kill: Counter[str] = Counter({sig.name: 0 for sig in signals})
    with serve_in_thread(cfg) as url:
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # each injected dropped connection
        for sig in signals:
            status = kill_at_random(generate_process(questions, out, url, cache, log), sig, cache, rng, most)
            exits[f"{sig.name} -> {status}"] += 1
            after_kill[sig.name] += len(temp_files(folder))
        final = generate_process(questions, out, url, cache, log).wait()
        auth = {"Authorization": f"Bearer {os.environ[KEY_ENV]}"}
        stats = httpx.get(f"{url}/_stats", params={"detail": True}, headers=auth).raise_for_status().json()
    found = measures(questions, out, folder, stats)
    print(f"drill: {args.questions} questions, 20% faults, {args.delay_ms:g}+-{args.delay_ms:g} ms per request, "
          f"{args.kills} SIGKILL and {args.terms} SIGTERM, then a full run (exit {final})")  # fmt: skip
    print("exit statuses: " + ", ".join(f"{k} x{n}" for k, n in sorted(exits.items())))
    after = ", ".join(f"{k} {n}" for k, n in sorted(after_kill.items()))
    print(f"temp files found right after the kills: {after} (the next start removes those of a SIGKILL)")
    bound = len(signals) * CONCURRENCY
    notes = {"re-sent": f" (in flight at a kill: at most {len(signals)} kills x {CONCURRENCY} = {bound})"}
    for name, value in found.items():
        print(f"{name}: {value}{notes.get(name, '')}")
    if final != 0:
        print(f"the final run failed; its log: {log}")
    return 0 if final == 0 and found["lost"] == found["duplicated"] == found["temp files left"] == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200, help="testbed questions to generate traces for")
    parser.add_argument("--kills", type=int, default=10, help="runs stopped with SIGKILL")
    parser.add_argument("--terms", type=int, default=10, help="runs stopped with SIGTERM")
    parser.add_argument("--delay-ms", type=float, default=20, help="server delay per request (plus as much jitter)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the questions, faults and kill moments")
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):  # a cache from before would answer without the server
            parser.error(f"--keep {args.keep}: give an empty or new folder")
        return drill(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="drill-generate-") as folder:
        return drill(args, Path(folder))


if __name__ == "__main__":
    sys.exit(main())
