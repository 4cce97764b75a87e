"""`rscaffold serve`: an OpenAI-compatible HTTP server (``/v1/models``, ``/v1/chat/completions``).

It hosts the scripted teacher (answers in ``reasoning_content`` and ``content``, as DeepSeek sends
them), a scripted judge, a fixed ``echo`` model and any local Hugging Face causal LM. It binds
127.0.0.1 unless told otherwise; a bearer token (read from an environment variable) is optional.
Fault injection (429 with Retry-After, 500, delays, truncated or garbage bodies, dropped connections) and a request
counter (``/v1/_stats``) serve tests and drills of the client.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rscaffold.testbed.teacher import ScriptedConfig


class FaultConfig(BaseModel):
    """Injected faults, each a share of requests (drawn in this order, after the delay)."""

    model_config = ConfigDict(extra="forbid")

    share_429: float = Field(0.0, ge=0, le=1, description="Answered 429 Too Many Requests with Retry-After.")
    retry_after_s: float = Field(1.0, ge=0, description="The Retry-After value sent with a 429 (seconds).")
    share_500: float = Field(0.0, ge=0, le=1, description="Answered 500 Internal Server Error.")
    share_truncated: float = Field(0.0, ge=0, le=1, description="Answered 200 with the JSON cut in half.")
    share_garbage: float = Field(0.0, ge=0, le=1, description="Answered 200 with a body that is not JSON.")
    share_dropped: float = Field(0.0, ge=0, le=1, description="Answered 200, then the connection drops mid-body.")
    delay_ms: float = Field(0.0, ge=0, description="Fixed latency added to every request.")
    delay_jitter_ms: float = Field(0.0, ge=0, description="Uniform random latency added on top.")
    judge_invalid_share: float = Field(0.0, ge=0, le=1, description="First judge askings answered invalidly.")
    seed: int = Field(0, description="Seed of the fault draws.")


class ServeConfig(BaseModel):
    """`serve`: the OpenAI-compatible server."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind (0.0.0.0 exposes it to the network).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free one).")
    token_env: str | None = Field(None, description="Environment variable holding the bearer token to require.")
    questions: str | None = Field(None, description="Testbed questions (file or folder) the scripted teacher knows.")
    hf_model: str | None = Field(None, description="Folder of a local Hugging Face causal LM to host.")
    student: str | None = Field(
        None, description="Folder of a trained student to host (signal-guided decoding, steps streamed)."
    )
    faults: FaultConfig = Field(default_factory=FaultConfig, description="Fault injection for tests and drills.")


@contextmanager
def serve_in_thread(
    cfg: ServeConfig, scripted: ScriptedConfig | None = None, seed: int = 0, decode: Any = None
) -> Iterator[str]:
    """Run the server in a background thread (tests, benchmarks); yields its base URL (``.../v1``)."""
    import uvicorn

    from rscaffold.serve_app import app_from_config

    app = app_from_config(cfg, scripted, seed, decode)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{cfg.host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold serve`` (each overrides its ``serve.*`` key)."""
    parser.add_argument("--host", help="interface to bind (serve.host, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (serve.port)")
    parser.add_argument("--questions", help="testbed questions file or folder for the scripted teacher")
    parser.add_argument("--hf-model", help="folder of a local Hugging Face causal LM to host")
    parser.add_argument("--student", help="folder of a trained student (rscaffold train) to host")
    parser.add_argument("--token-env", help="environment variable holding the bearer token to require")


def cmd_serve(args: argparse.Namespace, cfg: Any) -> int:
    """``rscaffold serve``; ``cfg`` is the whole Config (``serve``, ``generate.scripted``, ``run.seed``)."""
    import uvicorn

    from rscaffold.serve_app import app_from_config

    section: ServeConfig = getattr(cfg, "serve", cfg)
    given = {k: getattr(args, k, None) for k in ("host", "port", "questions", "hf_model", "student", "token_env")}
    section = section.model_copy(update={k: v for k, v in given.items() if v is not None})
    scripted = getattr(getattr(cfg, "generate", None), "scripted", None)
    seed = getattr(getattr(cfg, "run", None), "seed", 0)
    app = app_from_config(section, scripted, seed, getattr(cfg, "decode", None))
    uvicorn.run(app, host=section.host, port=section.port, log_level="info", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m rscaffold.serve [--port P] [--questions Q] [KEY=VALUE ...]`` (ServeConfig keys)."""
    from rscaffold.config import apply_override

    parser = argparse.ArgumentParser(prog="python -m rscaffold.serve")
    add_serve_arguments(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="ServeConfig keys, e.g. faults.share_500=0.1")
    args = parser.parse_args(argv)
    data: dict[str, Any] = {}
    for override in args.overrides:
        apply_override(data, override)
    return cmd_serve(args, ServeConfig.model_validate(data))


if __name__ == "__main__":
    raise SystemExit(main())
