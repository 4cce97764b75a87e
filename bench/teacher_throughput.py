"""Throughput of the API teacher against `rscaffold serve` with a fixed latency per request.

With latency L and concurrency C a perfect client achieves C / L requests per second; this prints the
achieved rate divided by that bound (goal >= 0.9 at C = 32, L = 50 ms), through the whole client path:
rate limits off, cache on (one SQLite commit per response), traces built. It also prints the CPU
each request costs the client and the server, and the machine's load: on a busy 2-core machine the
two processes get less than the ~1 core they need at 640 requests/s. ``--memory N`` runs N questions
and prints the client's peak resident memory (goal: flat, under 500 MB for 100,000).

    python bench/teacher_throughput.py [--requests 3000] [--concurrency 32] [--latency-ms 50]
    python bench/teacher_throughput.py --memory 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from rscaffold.config import ApiTeacherConfig
from rscaffold.schema import Question
from rscaffold.teachers.openai_compat import ApiTeacher

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    """The server in its own process, so it does not share the client's interpreter lock."""
    port = free_port()
    cmd = [sys.executable, "-m", "rscaffold.cli", "serve", "--port", str(port), f"serve.faults.delay_ms={latency_ms}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            httpx.get(f"{url}/models", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def questions(n: int, tag: str) -> Iterator[Question]:
    """Distinct questions, made lazily (the echo model answers any text)."""
    for i in range(n):
        yield Question(id=f"{tag}-{i}", text=f"Question {i} of run {tag}: what is {i} + 1?", gold="42")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of this process, or of process ``pid`` (Linux /proc)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, n: int, concurrency: int, cache: Path, server_pid: int) -> dict[str, float]:
    """Seconds, traces and CPU per request (client, server) for ``n`` fresh questions."""
    cfg = ApiTeacherConfig(base_url=url, model="echo", max_concurrency=concurrency, cache=str(cache), api_key_env=None)
    teacher = ApiTeacher(cfg)
    cpu, server_cpu, started = cpu_seconds(), cpu_seconds(server_pid), time.perf_counter()
    count = sum(1 for _ in teacher.generate(questions(n, f"{time.time_ns()}")))
    seconds = time.perf_counter() - started
    client_ms, server_ms = (cpu_seconds() - cpu) * 1e3 / count, (cpu_seconds(server_pid) - server_cpu) * 1e3 / count
    return {"requests": count, "seconds": seconds, "client_cpu_ms": client_ms, "server_cpu_ms": server_ms}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--memory", type=int, help="run this many questions and report peak memory instead")
    args = p.parse_args()
    proc, url = start_server(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache.sqlite"
            run(url, 2 * args.concurrency, args.concurrency, cache, proc.pid)  # warm up connections
            measured = run(url, args.memory or args.requests, args.concurrency, cache, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    rate, bound = measured["requests"] / measured["seconds"], args.concurrency / (args.latency_ms / 1000)
    result = {k: round(v, 3) for k, v in measured.items()}
    result.update(requests_per_s=round(rate, 1), bound_per_s=bound, ratio=round(rate / bound, 3))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["cpus"], result["load_1min"] = os.cpu_count(), round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
