"""The server under load: tokens per second with 1, 4, 16 and 64 concurrent clients against offline
batched decoding of the same questions with the same student, measured side by side in one run; p50/p95
latency, the server's peak memory, and whether every reply equals the decode of its question alone.

    python bench/serve_load.py [--student DIR] [--questions N] [--levels 1,4,16,64] [--batch 16]
        [--max-tokens 256] [--threads 1]

The server runs in its own process (`rscaffold serve --student DIR` on 127.0.0.1), the clients in this
one (asyncio, one connection each); offline decoding runs here with the same number of PyTorch
threads as the server. Without ``--student``: the demo's scaffolded student (`runs/demo`) when there
is one, else the shipped testbed base with a fresh signal embedding and head (weights drawn with a
fixed seed; every request then writes ``--max-tokens`` tokens). Greedy decoding throughout. Goal: 16
clients reach at least 0.8 of offline batched decoding's tokens per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from rscaffold.config import DecodeConfig, TestbedConfig
from rscaffold.decode import Decoder
from rscaffold.model import student_from_folder
from rscaffold.schema import Decoded, Question
from rscaffold.signal_sources import HeadPredictor
from rscaffold.testbed.problems import make_splits

ROOT = Path(__file__).resolve().parents[1]
DEMO_STUDENT = ROOT / "runs" / "demo" / "students" / "scaffold-s0"


def fresh_student(out: Path) -> Path:
    """The shipped base with a fresh SEL and head (seeded); the head never asks for the answer early."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rscaffold.config import ModelConfig
    from rscaffold.model import make_student, save_student, student_meta
    from rscaffold.signals import Signal

    base = ROOT / "rscaffold" / "bases" / "testbed"
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    model = make_student(lm, ModelConfig(lora=False), sel=True, head=True)
    with torch.no_grad():
        model.signal_embedding.weight.normal_(0, 0.5)
        model.signal_head.bias[Signal.RESPONSE] = -10.0
    meta = json.loads((base / "rscaffold_student.json").read_text())
    layout = {k: meta[k] for k in ("prompt_template", "predictor_query")}
    info = {"base": str(base), "add_bos": meta.get("add_bos", True)}
    save_student(model.eval(), AutoTokenizer.from_pretrained(base), out, student_meta("scaffold", model, info, layout))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline(student, questions: list[Question], cfg: DecodeConfig) -> tuple[float, list[Decoded]]:
    started = time.perf_counter()
    out = list(Decoder(student, HeadPredictor(), cfg)(questions))
    return time.perf_counter() - started, out


async def drive(url: str, model: str, questions: list[Question], clients: int, max_tokens: int) -> dict:
    """``clients`` connections, each sending the next question as soon as its last reply came."""
    queue = list(enumerate(questions))
    replies: dict[int, dict] = {}
    latency: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            i, q = queue.pop(0)
            body = {"model": model, "messages": [{"role": "user", "content": q.text}], "max_tokens": max_tokens}
            started = time.perf_counter()
            r = await http.post(f"{url}/chat/completions", json=body)
            r.raise_for_status()
            latency.append(time.perf_counter() - started)
            replies[i] = r.json()

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    tokens = sum(r["usage"]["completion_tokens"] for r in replies.values())
    latency.sort()
    return {
        "replies": [replies[i] for i in range(len(questions))],
        "tokens_per_s": tokens / wall,
        "p50": statistics.median(latency),
        "p95": latency[min(len(latency) - 1, round(0.95 * (len(latency) - 1)))],
    }


def same(reply: dict, d: Decoded) -> bool:
    message = reply["choices"][0]["message"]
    steps = [(s["text"], s["signal"]) for s in message["steps"]]
    want = [(s.text, s.signal.title if s.signal is not None else None) for s in d.steps]
    return message["content"] == d.answer_text and steps == want


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", type=Path, help="a student folder (default: the demo's, else a fresh one)")
    p.add_argument("--questions", type=int, default=64, help="requests per level (testbed test_id questions)")
    p.add_argument("--levels", default="1,4,16,64", help="concurrent clients, comma-separated")
    p.add_argument("--batch", type=int, default=16, help="rows decoded at once, offline and in the server")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens each request may write (max_tokens)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads, offline and in the server")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="rscaffold-serve-load-"))
    student_dir = args.student or (DEMO_STUDENT if DEMO_STUDENT.exists() else fresh_student(tmp / "student"))
    questions = make_splits(TestbedConfig(), 0)["test_id"][: args.questions]
    cfg = DecodeConfig(tau=0.0, max_new_tokens=args.max_tokens, batch_size=args.batch)
    student = student_from_folder(student_dir)
    offline(student, questions[: args.batch], cfg)  # warm-up
    wall, batched = offline(student, questions, cfg)
    before = sum(d.tokens for d in batched) / wall
    alone = [offline(student, [q], cfg.model_copy(update={"batch_size": 1}))[1][0] for q in questions]
    print(f"student {student_dir}; {len(questions)} questions, max_tokens {args.max_tokens}, {args.threads} thread(s)")

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    overrides = ["decode.tau=0.0", f"decode.max_new_tokens={args.max_tokens}", f"serve.batch_size={args.batch}"]
    cmd = [sys.executable, "-m", "rscaffold.cli", "serve", "--student", str(student_dir), "--port", str(port)]
    server = subprocess.Popen(cmd + overrides, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{url}/models", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if server.poll() is not None:
                    raise SystemExit(f"the server exited: {server.stderr.read()[-2000:]}") from None
                time.sleep(0.1)
        model = student_dir.name
        asyncio.run(drive(url, model, questions[: args.batch], args.batch, args.max_tokens))  # warm-up
        levels = [(level, asyncio.run(drive(url, model, questions, level, args.max_tokens))) for level in (
            int(x) for x in args.levels.split(","))]  # fmt: skip
        peak = peak_rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    # Offline again once the server is gone: the ratio is to the mean of the two (this machine's speed drifts).
    wall, batched = offline(student, questions, cfg)
    after = sum(d.tokens for d in batched) / wall
    offline_tps = (before + after) / 2
    drift = f"before {before:,.0f}, after {after:,.0f}"
    print(f"offline batched (batch {args.batch}): {offline_tps:,.0f} tokens/s ({drift})")
    print(f"{'clients':>7} {'tokens/s':>9} {'vs offline':>10} {'p50 s':>7} {'p95 s':>7} identical")
    for level, out in levels:
        identical = sum(same(r, d) for r, d in zip(out["replies"], alone, strict=True))
        print(
            f"{level:>7} {out['tokens_per_s']:>9,.0f} {out['tokens_per_s'] / offline_tps:>10.2f} "
            f"{out['p50']:>7.2f} {out['p95']:>7.2f} {identical}/{len(questions)}"
        )
    print(f"server peak resident memory: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
