"""The FastAPI app behind `rscaffold serve`: endpoints, streaming, faults, the request counter.

Imported only when a server starts, so reading the config does not load FastAPI. With a token set,
every route needs it; there are no documentation routes (``/docs``, ``/openapi.json``) to leak past it.
A malformed request gets a 400 with a JSON error naming the field, before any model sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from rscaffold.config import DecodeConfig, FaultConfig, ScriptedConfig, ServeConfig
from rscaffold.schema import Decoded, InputError
from rscaffold.serve.doubles import Model, UnknownRequest, build_models
from rscaffold.serve.engine import Busy, Event
from rscaffold.serve.student import StudentChat, finish_reason, message, step_json

log = logging.getLogger(__name__)


class Stats:
    """Requests received and answered, by status and by request fingerprint (canonical body hash)."""

    def __init__(self) -> None:
        self.status: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.received = 0

    def report(self, detail: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"received": self.received, "by_status": dict(self.status)}
        out["answered"] = sum(self.answered.values())
        out["repeats"] = sum(n - 1 for n in self.answered.values() if n > 1)
        if detail:
            out["fingerprints"] = dict(self.answered)
        return out


class ChatMessage(BaseModel):
    """One message as the hosted models read it; other fields (``name``, ...) pass through."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: str
    content: str | list[dict[str, Any]]


class ChatRequest(BaseModel):
    """The fields of a chat request the server and its models read, with their JSON types (strict: no
    ``"5"`` for 5); other OpenAI fields pass through unchecked."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None


class CompletionRequest(BaseModel):
    """The fields of a (legacy) completion request the server reads; others pass through unchecked."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None


def request_problem(body: Any, shape: type[BaseModel] = ChatRequest) -> str | None:
    """What is wrong with a parsed request body (one line naming the field), or None."""
    if not isinstance(body, dict):
        return f"the body must be a JSON object, got {type(body).__name__}"
    try:
        shape.model_validate(body)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        return f"field '{field}': {first['msg']}"
    return None


def fingerprint(body: dict[str, Any]) -> str:
    """SHA-256 of the request body as canonical JSON (tests compute it from the cached requests)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _usage(body: dict[str, Any], message: dict[str, str]) -> dict[str, Any]:
    """Token counts by whitespace words: enough for ledgers and rate limits in tests."""
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
    reasoning = len(message.get("reasoning_content", "").split())
    completion = reasoning + len(message.get("content", "").split())
    details = {"reasoning_tokens": reasoning}
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion} | {
        "completion_tokens_details": details
    }


def _completion(body: dict[str, Any], message: dict[str, str]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{fingerprint(body)[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": _usage(body, message),
    }


def _chunks(body: dict[str, Any], message: dict[str, str]) -> Iterator[str]:
    """Server-sent events of a streamed answer: reasoning pieces, then content pieces, then [DONE]."""
    base = {"id": f"chatcmpl-{fingerprint(body)[:16]}", "object": "chat.completion.chunk", "model": body.get("model")}

    def event(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return f"data: {json.dumps({**base, 'choices': [choice], **extra})}\n\n"

    yield event({"role": "assistant"})
    for field in ("reasoning_content", "content"):
        for piece in _pieces(message.get(field, "")):
            yield event({field: piece})
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    yield event({}, "stop", **({"usage": _usage(body, message)} if include_usage else {}))
    yield "data: [DONE]\n\n"


def _pieces(text: str) -> Iterator[str]:
    """Word-sized pieces, whitespace kept, so joining the deltas gives the text back."""
    start = 0
    for i, ch in enumerate(text):
        if ch.isspace() and i + 1 < len(text) and not text[i + 1].isspace():
            yield text[start : i + 1]
            start = i + 1
    if start < len(text):
        yield text[start:]


def create_app(cfg: ServeConfig, models: dict[str, Model], token: str | None = None) -> Any:
    """The FastAPI app; ``token``: the bearer token clients must send on every route (none: open)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        for model in models.values():  # requests still decoding hear that the server is going
            if isinstance(model, StudentChat):
                model.engine.close()

    app = FastAPI(title="rscaffold serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    stats, faults = Stats(), cfg.faults
    rng = random.Random(faults.seed)
    app.state.stats = stats

    def error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Any:
        stats.status[str(status)] += 1
        return JSONResponse({"error": {"message": message, "type": kind}}, status, headers=headers)

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        sent = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(sent, f"Bearer {token}".encode())  # constant time: no timing oracle

    @app.get("/v1/models")
    async def list_models(request: Request) -> Any:
        if not authorised(request):
            return error(401, "missing or wrong bearer token", "authentication_error")
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "rscaffold"} for m in models]}

    @app.get("/v1/_stats")
    async def get_stats(request: Request) -> Any:
        if not authorised(request):
            return error(401, "missing or wrong bearer token", "authentication_error")
        return stats.report(request.query_params.get("detail", "").lower() in ("1", "true", "yes"))

    async def received(request: Request, shape: type[BaseModel]) -> Any:
        """``(body, model)`` of a request, or the error to answer: token, JSON, fields, known model."""
        stats.received += 1
        if not authorised(request):
            return error(401, "missing or wrong bearer token", "authentication_error")
        try:
            body = await request.json()
        except ValueError:
            return error(400, "body is not JSON", "invalid_request_error")
        except ClientDisconnect:  # a killed client: nothing to answer
            stats.status["client-gone"] += 1
            return Response(status_code=499)
        if faults.delay_ms or faults.delay_jitter_ms:
            await asyncio.sleep((faults.delay_ms + rng.uniform(0, faults.delay_jitter_ms)) / 1000)
        if problem := request_problem(body, shape):
            return error(400, problem, "invalid_request_error")
        model = models.get(body["model"])
        if model is None:
            return error(404, f"unknown model; known: {', '.join(models)}", "invalid_request_error")
        return body, model

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        got = await received(request, ChatRequest)
        if not isinstance(got, tuple):
            return got
        body, model = got
        if isinstance(model, StudentChat):
            return await _student_reply(request, body, model, "chat", error)
        u = rng.random()
        if u < faults.share_429:
            return error(429, "rate limited (injected)", "rate_limit_error", {"Retry-After": str(faults.retry_after_s)})
        if u < faults.share_429 + faults.share_500:
            return error(500, "internal error (injected)", "server_error")
        try:
            message = await asyncio.to_thread(model, body) if _slow(model) else model(body)
        except UnknownRequest as e:
            return error(400, str(e), "invalid_request_error")
        u -= faults.share_429 + faults.share_500
        if u < faults.share_truncated + faults.share_garbage + faults.share_dropped:
            stats.status["200-broken"] += 1
            return _broken(u, faults, body, message)
        stats.status["200"] += 1
        stats.answered[fingerprint(body)] += 1
        if body.get("stream"):
            return StreamingResponse(_chunks(body, message), media_type="text/event-stream")
        return _completion(body, message)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        got = await received(request, CompletionRequest)
        if not isinstance(got, tuple):
            return got
        body, model = got
        if not isinstance(model, StudentChat):
            return error(400, f"model {body['model']!r} serves /v1/chat/completions only", "invalid_request_error")
        return await _student_reply(request, body, model, "completion", error)

    return app


async def _student_reply(request: Request, body: dict[str, Any], model: StudentChat, kind: str, error: Any) -> Any:
    """A student's reply: the request joins the running batch; streamed, one event per step as it is
    written; a client that goes away frees its row at once."""
    try:
        cfg, signals = model.settings(body)
        text = model.question(body, kind)
    except UnknownRequest as e:
        return error(400, str(e), "invalid_request_error")
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event] = asyncio.Queue()
    try:
        deliver = lambda e: loop.call_soon_threadsafe(events.put_nowait, e)  # noqa: E731 (from the engine's thread)
        ticket = model.engine.submit(text, cfg, deliver, signals, steps=bool(body.get("stream")))
    except Busy as e:
        return error(503, f"server busy: {e}; retry later", "server_busy", {"Retry-After": "1"})
    shape = _Shape(body, kind, model.prompt_tokens(text))
    if body.get("stream"):
        request.app.state.stats.status["200"] += 1
        return StreamingResponse(_student_events(events, ticket, shape), media_type="text/event-stream")
    while True:
        try:
            event = await asyncio.wait_for(events.get(), 0.5)
        except TimeoutError:
            if await request.is_disconnected():
                ticket.cancel()
                request.app.state.stats.status["client-gone"] += 1
                return Response(status_code=499)
            continue
        if "error" in event:
            return error(500, event["error"], "server_error")
        if "done" in event:
            request.app.state.stats.status["200"] += 1
            request.app.state.stats.answered[fingerprint(body)] += 1
            return shape.reply(event["done"])


class _Shape:
    """The OpenAI shapes of a student's reply, chat or completion."""

    def __init__(self, body: dict[str, Any], kind: str, prompt_tokens: int):
        self.body, self.kind, self.prompt_tokens = body, kind, prompt_tokens
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + fingerprint(body)[:16]
        self.created = int(time.time())

    def usage(self, d: Decoded) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": d.tokens} | {
            "total_tokens": self.prompt_tokens + d.tokens
        }

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = "chat.completion" if self.kind == "chat" else "text_completion"
        return {
            "id": self.id,
            "object": kind + (".chunk" if chunk and self.kind == "chat" else ""),
            "created": self.created,
            "model": self.body.get("model"),
        }

    def reply(self, d: Decoded) -> dict[str, Any]:
        if self.kind == "chat":
            choice = {"index": 0, "message": message(d), "finish_reason": finish_reason(d)}
        else:
            extra = {k: v for k, v in message(d).items() if k in ("reasoning_content", "steps", "stop_reason")}
            choice = {"index": 0, "text": d.answer_text, "logprobs": None, "finish_reason": finish_reason(d), **extra}
        return {**self._head(False), "choices": [choice], "usage": self.usage(d)}

    def event(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        if self.kind == "chat":
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:  # a completion's chunks carry text; a step comes as reasoning_content with empty text
            choice = {"index": 0, "text": delta.pop("content", ""), "logprobs": None, "finish_reason": finish, **delta}
        return f"data: {json.dumps({**self._head(True), 'choices': [choice], **extra})}\n\n"


async def _student_events(events: asyncio.Queue[Event], ticket: Any, shape: _Shape) -> AsyncIterator[str]:
    """Server-sent events of a student's reply; if the client goes away, the request is cancelled."""
    try:
        if shape.kind == "chat":
            yield shape.event({"role": "assistant"})
        while True:
            event = await events.get()
            if "step" in event:
                step = event["step"]
                yield shape.event({"reasoning_content": step.text + step.sep, "rscaffold_step": step_json(step)})
            elif "done" in event:
                d = event["done"]
                yield shape.event({"content": d.answer_text})
                usage = bool((shape.body.get("stream_options") or {}).get("include_usage"))
                yield shape.event({}, finish_reason(d), **({"usage": shape.usage(d)} if usage else {}))
                yield "data: [DONE]\n\n"
                return
            else:
                yield f"data: {json.dumps({'error': {'message': event['error'], 'type': 'server_error'}})}\n\n"
                return
    finally:
        ticket.cancel()  # a no-op once finished; frees the row of a client that left


def _broken(u: float, faults: FaultConfig, body: dict[str, Any], message: dict[str, str]) -> Response:
    """A 200 whose body is cut in half, is not JSON, or stops mid-way as the connection drops."""
    stream = bool(body.get("stream"))
    media = "text/event-stream" if stream else "application/json"
    text = "".join(_chunks(body, message)) if stream else json.dumps(_completion(body, message))
    if u < faults.share_truncated:
        return Response(text[: len(text) // 2], 200, media_type=media)
    if u < faults.share_truncated + faults.share_garbage:
        return Response("<html>upstream hiccup</html>", 200, media_type=media)

    async def dropping() -> AsyncIterator[bytes]:
        yield text[: len(text) // 2].encode()
        raise ConnectionAbortedError("connection dropped (injected fault)")

    return StreamingResponse(dropping(), 200, {"content-length": str(len(text.encode()))}, media_type=media)


def _slow(model: Model) -> bool:
    """Models that compute for long run in a worker thread, so the event loop keeps serving."""
    return type(model).__name__ == "HfChat"


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or "" (every interface)
        return False


def bearer_token(cfg: ServeConfig) -> str | None:
    """The token clients must send, from the variable ``cfg.token_env``. Refuses (InputError) to serve
    open by accident: a named variable that is unset or empty, or a host beyond loopback with no token
    unless ``cfg.insecure`` (then a warning)."""
    token = os.environ.get(cfg.token_env, "") if cfg.token_env is not None else None
    if token is not None and not token.strip():
        raise InputError(
            f"serve: the token variable {cfg.token_env} (--token-env) is unset or empty; refusing to serve without it"
        )
    if token is None and not _loopback(cfg.host):
        if not cfg.insecure:
            raise InputError(
                f"serve: host {cfg.host!r} is reachable beyond this machine and no token is set: "
                "give --token-env NAME, or --insecure (serve.insecure) to serve it open"
            )
        log.warning(
            "serving on %s WITHOUT AUTHENTICATION (--insecure): anyone who can reach it can use the hosted models",
            cfg.host,
        )
    return token


def app_from_config(
    cfg: ServeConfig, scripted: ScriptedConfig | None = None, seed: int = 0, decode: DecodeConfig | None = None
) -> Any:
    """``decode``: the DecodeConfig a hosted student decodes with (defaults when None)."""
    token = bearer_token(cfg)  # before loading any model: a refusal comes at once
    scripted = scripted or ScriptedConfig()
    models = build_models(cfg.questions, scripted, seed, cfg.hf_model, cfg.faults.judge_invalid_share)
    if cfg.student:
        from pathlib import Path

        models[Path(cfg.student).name] = StudentChat(
            cfg.student, decode or DecodeConfig(), cfg.batch_size, cfg.max_queue, cfg.train_traces
        )
    return create_app(cfg, models, token)
