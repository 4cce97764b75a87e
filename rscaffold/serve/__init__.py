"""`rscaffold serve`: an OpenAI-compatible HTTP server (``/v1/models``, ``/v1/chat/completions``, and
``/v1/completions`` for a hosted student).

It hosts the scripted teacher (answers in ``reasoning_content`` and ``content``, as DeepSeek sends
them), a scripted judge, a fixed ``echo`` model, any local Hugging Face causal LM, and a trained
student, whose concurrent requests decode together in one running batch
(:mod:`rscaffold.serve.engine`; ``serve.batch_size`` rows, ``serve.max_queue`` waiting, then 503). It binds
127.0.0.1 unless told otherwise; a bearer token (read from an environment variable) guards every
route. It refuses to start with a named token variable unset or empty, and beyond loopback with no
token unless ``--insecure`` says so.
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

from pydantic import ValidationError

from rscaffold.config import Config, ScriptedConfig, ServeConfig
from rscaffold.schema import InputError

_OPTIONS = ("host", "port", "questions", "hf_model", "student", "token_env", "insecure")


@contextmanager
def serve_in_thread(
    cfg: ServeConfig, scripted: ScriptedConfig | None = None, seed: int = 0, decode: Any = None
) -> Iterator[str]:
    """Run the server in a background thread (tests, benchmarks); yields its base URL (``.../v1``)."""
    import uvicorn

    from rscaffold.serve.app import app_from_config

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
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,  # not given: serve.insecure decides
        help="serve a host beyond loopback with no token (serve.insecure)",
    )


def serve_section(args: argparse.Namespace, cfg: Config) -> ServeConfig:
    """The ``serve`` section with the options given, validated as the config is (``--port -1`` fails)."""
    given = {k: v for k in _OPTIONS if (v := getattr(args, k, None)) is not None}
    try:
        return ServeConfig.model_validate({**cfg.serve.model_dump(), **given})
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise InputError(f"serve: {option}: {first['msg']} (got {first.get('input')!r})") from None


def cmd_serve(args: argparse.Namespace, cfg: Config) -> int:
    """``rscaffold serve``: the ``serve`` section, with ``generate.scripted``, ``run.seed`` and ``decode``."""
    import uvicorn

    from rscaffold.serve.app import app_from_config

    section = serve_section(args, cfg)
    app = app_from_config(section, cfg.generate.scripted, cfg.run.seed, cfg.decode)
    uvicorn.run(app, host=section.host, port=section.port, log_level="info", access_log=False)
    return 0
