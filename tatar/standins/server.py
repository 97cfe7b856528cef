"""The local reference teacher: an OpenAI-compatible HTTP server (Starlette on uvicorn).

``POST /v1/chat/completions`` answers teacher prompts with rationales grounded in the attached image (see
``tatar.standins.teacher``) and judge prompts with verdicts (``tatar.standins.judge``);
``GET /v1/models`` and ``GET /health`` complete the protocol. It is asynchronous, so 64 concurrent requests
with 100 ms of added latency overlap instead of queueing. Fault flags make it a test bench for clients: added
latency, 429/500 error rates, hangs past the client's timeout, malformed replies.

``tatar teacher serve`` runs it in the foreground; ``running_server()`` runs it in a thread on a free loopback
port (what ``teacher.base_url: local`` does for the length of a stage).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tatar.standins import REFERENCE_MODEL, judge
from tatar.standins.teacher import BadRequest, malformed, parse_request, rationale

RETRY_AFTER_MS = "20"  # real servers say when to come back; keeps fault-injection runs fast


@dataclass(frozen=True)
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0  # answered 429 or 500 (half each)
    timeout_rate: float = 0.0  # hang for hang_s, past any sane client timeout
    malformed_rate: float = 0.0  # a broken variant of the good reply
    seed: int = 0
    hang_s: float = 600.0


@dataclass
class ServerStats:
    """Counters per outcome; ``completions`` counts well-formed teacher replies."""

    requests: int = 0
    completions: int = 0
    judged: int = 0
    errors: int = 0
    timeouts: int = 0
    malformed: int = 0
    bad_requests: int = 0


def _judge_verdict(messages: list[dict]) -> str | None:
    """The stand-in judge answers judge prompts; None for everything else."""
    return judge.reference_verdict(messages)  # looked up per call, so tests can swap it


async def _hang(request: Request, seconds: float) -> None:
    """Stall like an overloaded server, until the client gives up (disconnects) or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                        headers={"retry-after-ms": RETRY_AFTER_MS})


def create_app(faults: Faults = Faults(), stats: ServerStats | None = None) -> Starlette:
    stats = stats if stats is not None else ServerStats()
    rng = random.Random(faults.seed)  # one event loop: draws are sequential and reproducible per arrival order

    async def chat(request: Request) -> JSONResponse:
        stats.requests += 1
        try:
            body = await request.json()
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            stats.bad_requests += 1
            return _error(400, "body must be JSON with a 'messages' list", "invalid_request_error")
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if rng.random() < faults.timeout_rate:
            stats.timeouts += 1
            await _hang(request, faults.hang_s)
            return _error(504, "hung on purpose", "timeout")
        if rng.random() < faults.error_rate:
            stats.errors += 1
            return _error(429, "rate limited on purpose", "rate_limit") if rng.random() < 0.5 else \
                _error(500, "failed on purpose", "server_error")
        try:
            text = _judge_verdict(messages)
            if text is None:
                text = rationale(parse_request(messages))  # measures are cached by image content hash
                stats.completions += 1
            else:
                stats.judged += 1
        except BadRequest as exc:
            stats.bad_requests += 1
            return _error(400, str(exc), "invalid_request_error")
        if rng.random() < faults.malformed_rate:
            stats.malformed += 1
            text = malformed(text, rng) if "<think>" in text else text[: len(text) // 2]
        return JSONResponse(_completion(body.get("model") or REFERENCE_MODEL, messages, text))

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [
            {"id": REFERENCE_MODEL, "object": "model", "created": 0, "owned_by": "tatar"}]})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", **vars(stats)})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models), Route("/health", health)])


def _completion(model: str, messages: list[dict], text: str) -> dict:
    """An OpenAI chat.completion object; token counts are word-based estimates (images count 256)."""
    prompt_tokens = 0
    for message in messages:
        content = message.get("content")
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
            prompt_tokens += len(part.get("text", "").split()) if part.get("type") == "text" else 256
    completion_tokens = len(text.split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # Nagle's algorithm plus delayed ACKs add about 40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _config(app: Starlette, **kwargs) -> uvicorn.Config:
    # Graceful shutdown waits at most 1 s for hung (fault-injected) requests before cancelling them. Idle
    # keep-alive connections stay open longer than clients keep them (httpx and openai's aiohttp transport: 5 s),
    # so the client always closes first: a server closing one just as the client reuses it fails that request
    # (openai's aiohttp transport reports it as a timeout).
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1,
                          backlog=4096, timeout_keep_alive=75, **kwargs)


class ReferenceServer:
    """The server in a daemon thread on a loopback port (0 = a free one)."""

    def __init__(self, faults: Faults = Faults(), host: str = "127.0.0.1", port: int = 0,
                 app: Starlette | None = None):
        self.faults, self.stats = faults, ServerStats()
        self._socket = _bind(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(_config(app or create_app(faults, self.stats)))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="tatar-reference-teacher", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, wait_s: float = 30.0) -> ReferenceServer:
        self._thread.start()
        deadline = time.monotonic() + wait_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"reference teacher did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@contextmanager
def serve_in_thread(host: str = "127.0.0.1", port: int = 0, **faults) -> Iterator[ReferenceServer]:
    server = ReferenceServer(Faults(**faults), host=host, port=port).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serve_app(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[ReferenceServer]:
    """Any other app the same way: test servers that misbehave in ways the fault flags cannot."""
    server = ReferenceServer(host=host, port=port, app=app).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_server(**faults) -> Iterator[str]:
    """The reference teacher on a free loopback port for the block; yields its base URL (``.../v1``)."""
    with serve_in_thread(**faults) as server:
        yield server.base_url


def serve_forever(host: str = "127.0.0.1", port: int = 8000, latency_ms: float = 0.0, error_rate: float = 0.0,
                  timeout_rate: float = 0.0, malformed_rate: float = 0.0, seed: int = 0) -> None:
    """``tatar teacher serve``: run in the foreground until interrupted (port 0 picks a free port).
    The first line printed is ``serving <base_url>``, for scripts that start it as a subprocess."""
    faults = Faults(latency_ms=latency_ms, error_rate=error_rate, timeout_rate=timeout_rate,
                    malformed_rate=malformed_rate, seed=seed)
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    print(f"serving http://{bound_host}:{bound_port}/v1 (model {REFERENCE_MODEL}; {faults})", flush=True)
    uvicorn.Server(_config(create_app(faults))).run(sockets=[sock])
