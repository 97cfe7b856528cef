"""A generic, resumable chat-completions runner over ``openai.AsyncOpenAI``.

It knows nothing about rationales: the teacher stage and the LLM judge both hand it *jobs* (an id, a cache key,
a messages builder, sampling) and a *check* that accepts or rejects a reply with a reason. The runner

- answers a job from the record-level cache when an accepted reply is stored under its key (jobs sharing a
  key are asked once);
- otherwise asks the endpoint with bounded concurrency (a pool of ``concurrency`` workers). The openai client
  retries 429, 5xx, timeouts and dropped connections itself with exponential backoff and jitter
  (``max_retries``; it honours ``Retry-After``);
- re-asks a rejected reply up to ``max_reasks`` times, telling the model why, then records a failure;
- caches each accepted reply the moment it arrives, so a killed run loses at most the calls in flight;
- fails one job, never the run, for anything that goes wrong while building or sending its request (an image
  unreadable mid-run, a transport error, a reply that is not a chat completion), with the reason;
- keeps a reasoning model's own reasoning (vLLM's ``message.reasoning_content`` / ``message.reasoning``) apart
  from the reply text, and removes credentials from every error text it records (``tatar.redact``).

Any OpenAI-compatible server works (vLLM, ``transformers serve``, hosted APIs); ``base_url: local`` starts the
project's reference teacher on a free loopback port for the duration of the run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from urllib.parse import urlparse

import httpx
import openai
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from tatar.redact import public_url, redact
from tatar.teacher.cache import ReplyCache

LOCAL = "local"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
DUMMY_KEY = "tatar-no-key"  # local servers ignore the key, but the openai client insists on one
RETRY_COUNT_HEADER = "x-stainless-retry-count"  # set by the openai client on every attempt it sends
REASK = "Your reply was rejected: {reason}. Reply again from scratch, following the required format exactly."
# A check's reason "<kind>: detail" with one of these kinds fails the job as that kind, any other as "malformed".
REJECTION_KINDS = ("degenerate",)


class EndpointError(RuntimeError):
    """The endpoint is misconfigured (no key, wrong model, refused credentials): retrying cannot help."""


# ------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class Endpoint:
    """Where and how to call a chat model; built from any config section with these fields
    (``TeacherConfig``, ``JudgeConfig``) by :meth:`of`."""

    base_url: str
    model: str
    api_key_env: str
    concurrency: int
    timeout_s: float
    max_retries: int
    max_reasks: int
    cache_dir: str | None

    @classmethod
    def of(cls, config) -> Endpoint:
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})

    @property
    def is_local(self) -> bool:
        return self.base_url == LOCAL or urlparse(self.base_url).hostname in LOOPBACK_HOSTS

    def api_key(self) -> str:
        """The key from the environment variable named by ``api_key_env``; never stored anywhere."""
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if self.is_local:
            return DUMMY_KEY
        raise EndpointError(f"environment variable {self.api_key_env} is not set: it must hold the API key for "
                            f"{public_url(self.base_url)} (any value for a server without authentication)")

    def redact(self, text: str) -> str:
        """``text`` without credentials: the patterns of ``tatar.redact`` and the key this endpoint sends."""
        return redact(text, secrets=[os.environ.get(self.api_key_env)])


@contextmanager
def serving(endpoint: Endpoint) -> Iterator[str]:
    """The base URL to call: the endpoint's own, or a reference teacher started for the block when ``local``."""
    if endpoint.base_url != LOCAL:
        yield endpoint.base_url
        return
    from tatar.standins.server import running_server

    with running_server() as base_url:
        yield base_url


def standin_revision(endpoint: Endpoint) -> str | None:
    """The local reference teacher's code version when it is the model asked, so improving it re-asks it (part
    of its replies' cache key; real models are told apart by their name). Only the package's two constants are
    read, never the stand-ins themselves."""
    from tatar.standins import REFERENCE_MODEL, REFERENCE_REVISION

    return REFERENCE_REVISION if endpoint.model == REFERENCE_MODEL else None


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int

    @classmethod
    def of(cls, config) -> Sampling:
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


# -------------------------------------------------------------------------------------- jobs, results
@dataclass(frozen=True)
class Job:
    """One question. ``key`` must hash everything that determines the answer (see ``cache.cache_key``);
    ``messages`` is called only when the endpoint is really asked, so images are read lazily."""

    id: str
    key: str
    messages: Callable[[], list[dict]]
    sampling: Sampling


# check(job, reply text) -> (accepted, reason when rejected)
Check = Callable[[Job, str], tuple[bool, str]]


@dataclass
class Reply:
    id: str
    key: str
    text: str
    model: str
    cached: bool
    attempts: int  # chat calls made for this job in this run (0 when cached)
    reasoning: str = ""  # the model's own reasoning when the server sent it apart (vLLM's reasoning parser)


@dataclass
class Failure:
    id: str
    # "<kind>: <detail>", kind in malformed, degenerate, timeout, rate_limited, server_error, conflict, connection,
    # bad_request, request_error (the request could not be built or sent, e.g. an unreadable image)
    reason: str
    attempts: int


@dataclass
class Completion:
    text: str  # message.content
    model: str
    reasoning: str = ""  # message.reasoning_content (vLLM < 0.11) or message.reasoning
    finish_reason: str | None = None


@dataclass
class RunStats:
    jobs: int = 0
    unique_keys: int = 0
    cached: int = 0
    answered: int = 0  # jobs answered by the endpoint in this run
    failed: int = 0
    calls: int = 0  # chat completions requested (re-asks included, transport retries not)
    http_retries: int = 0  # retries the openai client made (408, 409, 429, 5xx, timeouts, dropped connections)
    retries_by_kind: dict[str, int] = field(default_factory=dict)  # of http_retries: what was retried
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    failures_by_kind: dict[str, int] = field(default_factory=dict)

    @classmethod
    def combined(cls, runs: Sequence[RunStats]) -> RunStats:
        """The statistics of runs made one after another (counts and seconds add up)."""
        total = cls()
        for run in runs:
            for f in fields(cls):
                value = getattr(run, f.name)
                if isinstance(value, dict):
                    merged = getattr(total, f.name)
                    for k, n in value.items():
                        merged[k] = merged.get(k, 0) + n
                else:
                    setattr(total, f.name, getattr(total, f.name) + value)
        return total

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3), "calls_per_s": round(self.calls_per_s, 2)}


@dataclass
class ChatRun:
    replies: list[Reply]
    failures: list[Failure]
    stats: RunStats


# ------------------------------------------------------------------------------------------- runner
def run_chat(endpoint: Endpoint, jobs: Sequence[Job], check: Check, *, label: str = "chat",
             progress: bool = True) -> ChatRun:
    """Synchronous entry point for stages: serves ``local`` if needed and runs every job to an outcome."""
    with serving(endpoint) as base_url:
        return run_async(run_chat_async(endpoint, jobs, check, base_url=base_url, label=label, progress=progress))


def run_async(coro):
    """``asyncio.run`` on uvloop when installed (``uvicorn[standard]`` brings it): less CPU per request, and CPU
    is what bounds the client at high concurrency."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def run_chat_async(endpoint: Endpoint, jobs: Sequence[Job], check: Check, *, base_url: str,
                         label: str = "chat", progress: bool = True,
                         client: openai.AsyncOpenAI | None = None) -> ChatRun:
    """Every job ends in exactly one of ``replies`` or ``failures`` (in the order of ``jobs``)."""
    runner = _Runner(endpoint, check, client or make_client(endpoint, base_url))
    try:
        return await runner.run(jobs, label=label, progress=progress)
    finally:
        if client is None:
            await runner.client.close()


def make_client(endpoint: Endpoint, base_url: str, **kwargs) -> openai.AsyncOpenAI:
    # openai's aiohttp transport (``openai[aiohttp]``): the same client, retries and timeouts, but about a third
    # less CPU per request than the default httpx transport (measured), and CPU is what bounds a high-concurrency
    # run against a fast server.
    kwargs.setdefault("http_client", openai.DefaultAioHttpClient())
    return openai.AsyncOpenAI(base_url=base_url, api_key=endpoint.api_key(), timeout=endpoint.timeout_s,
                              max_retries=endpoint.max_retries, **kwargs)


def _error_kind(exc: openai.OpenAIError) -> str:
    if isinstance(exc, openai.APIStatusError):
        return _status_kind(exc.status_code)
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError, its base class
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    return "bad_request"


def _status_kind(status: int) -> str:
    if status == 408:
        return "timeout"
    if status == 409:
        return "conflict"
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else "bad_request"


def _retries_taken(request: httpx.Request | None) -> int:
    """The client stamps each attempt with the retries before it; the last attempt's stamp is the job's count."""
    try:
        return int(request.headers.get(RETRY_COUNT_HEADER) or 0)
    except (AttributeError, RuntimeError, ValueError):
        return 0


class _Runner:
    def __init__(self, endpoint: Endpoint, check: Check, client: openai.AsyncOpenAI):
        self.endpoint, self.check, self.client = endpoint, check, client
        self.cache = ReplyCache(endpoint.cache_dir)
        self.stats = RunStats()
        # Error responses seen by kind, retried or not; a job's final error response is subtracted, so what is
        # left are the retries of each kind. Retries with no response at all are timeouts or dropped connections.
        self._error_responses: Counter[str] = Counter()
        self._final_errors: Counter[str] = Counter()

    async def _on_response(self, response) -> None:
        if response.status_code >= 400:
            self._error_responses[_status_kind(response.status_code)] += 1

    def _count_retries(self) -> None:
        by_kind = {kind: n - self._final_errors[kind] for kind, n in self._error_responses.items()
                   if kind != "bad_request" and n > self._final_errors[kind]}
        if rest := self.stats.http_retries - sum(by_kind.values()):
            by_kind["timeout_or_connection"] = rest
        self.stats.retries_by_kind = by_kind

    async def run(self, jobs: Sequence[Job], *, label: str, progress: bool) -> ChatRun:
        hooks = getattr(getattr(self.client, "_client", None), "event_hooks", None)
        if hooks is not None:
            hooks["response"].append(self._on_response)
        try:
            return await self._run(jobs, label=label, progress=progress)
        finally:
            if hooks is not None:
                hooks["response"].remove(self._on_response)

    async def _run(self, jobs: Sequence[Job], *, label: str, progress: bool) -> ChatRun:
        start = time.perf_counter()
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        self.stats.jobs, self.stats.unique_keys = len(jobs), len(groups)
        outcomes: dict[str, Reply | Failure] = {}  # by key

        todo: asyncio.Queue[Job] = asyncio.Queue()
        for key, group in groups.items():
            hit = self._cached(group[0])
            if hit is None:
                todo.put_nowait(group[0])
            else:
                outcomes[key] = hit

        with _progress(progress) as bar:
            task = bar.add_task(label, total=len(jobs), completed=sum(len(groups[k]) for k in outcomes))

            async def worker() -> None:
                while not todo.empty():
                    job = todo.get_nowait()
                    outcomes[job.key] = await self._ask(job)
                    bar.advance(task, len(groups[job.key]))

            n_workers = max(1, min(self.endpoint.concurrency, todo.qsize()))
            workers = [asyncio.create_task(worker()) for _ in range(n_workers)]
            try:
                await asyncio.gather(*workers)
            finally:  # a fatal error in one worker stops the others; finished replies are already cached
                for w in workers:
                    w.cancel()

        replies, failures = [], []
        for job in jobs:
            outcome = outcomes[job.key]
            if isinstance(outcome, Reply):
                replies.append(Reply(job.id, job.key, outcome.text, outcome.model, outcome.cached, outcome.attempts,
                                     outcome.reasoning))
            else:
                failures.append(Failure(job.id, outcome.reason, outcome.attempts))
        self.stats.cached = sum(r.cached for r in replies)
        self.stats.answered = len(replies) - self.stats.cached
        self.stats.failed = len(failures)
        self.stats.failures_by_kind = dict(Counter(f.reason.split(":")[0] for f in failures))
        self.stats.seconds = time.perf_counter() - start
        self._count_retries()
        return ChatRun(replies, failures, self.stats)

    def _cached(self, job: Job) -> Reply | None:
        entry = self.cache.get(job.key)
        if entry is None or not self.check(job, entry["text"])[0]:  # a stricter check invalidates old replies
            return None
        return Reply(job.id, job.key, entry["text"], entry.get("model", ""), cached=True, attempts=0,
                     reasoning=entry.get("reasoning", ""))

    async def _ask(self, job: Job) -> Reply | Failure:
        """One job to its outcome; whatever goes wrong with this job's request fails this job only."""
        attempts = 0
        try:
            messages = job.messages()
            reason = ""
            for _ in range(self.endpoint.max_reasks + 1):
                attempts += 1
                reply = await self._complete(messages, job.sampling)
                ok, reason = self.check(job, reply.text)
                if ok:
                    entry = {"id": job.id, "model": reply.model, "text": reply.text}
                    self.cache.put(job.key, {**entry, "reasoning": reply.reasoning} if reply.reasoning else entry)
                    return Reply(job.id, job.key, reply.text, reply.model, cached=False, attempts=attempts,
                                 reasoning=reply.reasoning)
                if reply.finish_reason == "length":
                    reason += (f" (the reply was cut at max_tokens={job.sampling.max_tokens}; a reasoning model "
                               f"spends tokens on its own reasoning too)")
                if attempts <= self.endpoint.max_reasks:
                    self.stats.reasks += 1
                    messages = [*messages, {"role": "assistant", "content": reply.text},
                                {"role": "user", "content": REASK.format(reason=reason)}]
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            raise EndpointError(self.endpoint.redact(
                f"{public_url(self.endpoint.base_url)} refused {self.endpoint.model!r} (HTTP {exc.status_code}): "
                f"{exc.message}")) from None
        except openai.APIError as exc:
            return self._failure(job, exc, attempts)
        except Exception as exc:  # noqa: BLE001 - one record's trouble (an unreadable image...) is that record's
            return Failure(job.id, self.endpoint.redact(f"request_error: {type(exc).__name__}: {exc}"), attempts)
        kind, _, detail = reason.partition(": ")
        if kind not in REJECTION_KINDS:
            kind, detail = "malformed", reason
        return Failure(job.id, f"{kind}: {detail} (after {attempts} attempts)", attempts)

    def _failure(self, job: Job, exc: openai.APIError, attempts: int) -> Failure:
        response = getattr(exc, "response", None)
        request = response.request if response is not None else getattr(exc, "request", None)
        self.stats.http_retries += _retries_taken(request)
        kind = _error_kind(exc)
        if isinstance(exc, openai.APIStatusError):
            self._final_errors[kind] += 1
        return Failure(job.id, self.endpoint.redact(f"{kind}: {type(exc).__name__}: {exc}"), attempts)

    async def _complete(self, messages: list[dict], sampling: Sampling) -> Completion:
        """One chat completion through the openai client's own request path (auth, retries with backoff,
        timeouts, error types), posted as the plain JSON body it is: ``chat.completions.create`` would first walk
        every message part against the SDK's typed-dict annotations (about half of the client's CPU per request
        here, for a body it leaves unchanged), then build pydantic models of the reply; at 64 requests in flight
        the client's CPU is what bounds the rate."""
        self.stats.calls += 1
        response = await self.client.post(
            "/chat/completions", cast_to=httpx.Response,  # the raw response (openai 3 returns its httpx2 twin)
            body={"model": self.endpoint.model, "messages": messages, "temperature": sampling.temperature,
                  "top_p": sampling.top_p, "max_tokens": sampling.max_tokens})
        # The client stamps each attempt with its retry count; the answered attempt says how many came before.
        self.stats.http_retries += _retries_taken(response.request)
        try:
            completion = response.json()
            choice = completion["choices"][0] if completion.get("choices") else {}
            message = choice.get("message") or {}
            usage = completion.get("usage") or {}
            text = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
            if not isinstance(text, str) or not isinstance(reasoning, str):
                raise TypeError("content is not text")
        except (ValueError, AttributeError, KeyError, IndexError, TypeError):
            # not a chat completion: the check rejects it and the job is re-asked
            return Completion("", self.endpoint.model)
        self.stats.prompt_tokens += usage.get("prompt_tokens") or 0
        self.stats.completion_tokens += usage.get("completion_tokens") or 0
        return Completion(text, completion.get("model") or self.endpoint.model, reasoning,
                          choice.get("finish_reason"))


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:.1f}/s", style="cyan")


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    """Rich progress bar with rate and ETA on stderr (disabled: same API, nothing drawn)."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   console=Console(stderr=True), disable=not enabled)
    with bar:
        yield bar
