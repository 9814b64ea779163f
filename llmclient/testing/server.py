"""The simulated LLM server: routing, slots and wait queue, rate limit, faults and statistics.

`SimulatedServer` answers Ollama-native (`/api/*`), OpenAI (`/v1/*`) and Azure OpenAI
(`/openai/deployments/<name>/*`, served as `/v1/*`) requests on loopback; the wire payloads come
from `_protocols`, the fault answers from `_faults`, the HTTP/1.1 plumbing from `_http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from types import TracebackType
from typing import Self

from . import _faults, _tools
from . import _protocols as proto
from ._batches import BatchService
from ._faults import Fault
from ._http import HTTPServer, Request, Responder
from ._reply import JSON_TYPE, Reply, ServerStats, dumps, ndjson, sse

__all__ = ["Fault", "ServerStats", "SimulatedServer"]

_INFERENCE_PATHS = frozenset(
    {"/api/chat", "/api/generate", "/api/embed", "/v1/chat/completions", "/v1/embeddings"}
)
_RATE_HEADERS = ("openai", "ietf", "both", "none")
_INTROSPECTION = ("llama.cpp", "vllm")
# Azure OpenAI's deployment paths (`AsyncAzureOpenAI`), served as the OpenAI path in group 1.
_AZURE_PATH = re.compile(r"/openai/deployments/[^/]+(/chat/completions|/embeddings)")


@dataclass(frozen=True, slots=True)
class _Injected:
    fault: Fault
    retry_after: float | None
    path: str | None
    echo_key: bool = False


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


class SimulatedServer:
    """An Ollama- and OpenAI-compatible LLM server on loopback with deterministic answers.

    At most `parallel` requests are served at once (Ollama's `OLLAMA_NUM_PARALLEL` slots); the
    others wait in FIFO order. By default (`max_queue=None`) they wait without bound, as Ollama
    since 0.11.5 makes requests for an already-loaded model wait for a slot: the warm-model
    default, where overload shows as latency growing with the backlog (and client timeouts),
    never as a refusal. `max_queue=N` is the bounded queue (`OLLAMA_MAX_QUEUE`) that Ollama
    applies while a model loads, and older servers always: beyond N waiting requests the answer
    is 503 `{"error": "server busy, please try again.  maximum pending requests exceeded"}`.

    Service time is `latency + token_latency * tokens`, spent holding a slot. `rpm` limits
    accepted inference requests over a sliding window of `rpm_window` seconds (a minute by
    default), announced in each answer's headers: OpenAI's `x-ratelimit-*-requests`
    (`rate_headers="openai"`), the IETF `RateLimit` and `RateLimit-Policy` ("ietf"), both, or
    none; the reset they give is when the oldest counted request leaves the window.
    `introspection` adds the pages a real server answers about its capacity: llama.cpp's
    `GET /props` (`total_slots` = `parallel`) and `/health`, or vLLM's Prometheus
    `GET /metrics` (`vllm:num_requests_running` and `_waiting`, live). Faults
    (see `Fault`) come from `inject()` (first, in order) or at random from `fault_rates`; the
    rpm limit and random faults apply to inference paths only. A fault answer is sent at once
    and holds no slot.

    Chat requests offering `tools` are answered with a call to one (the `tool_choice` named,
    else the first), arguments made from its parameter schema; after a tool result the answer
    quotes it; a JSON schema (`response_format` / Ollama's `format`) gets a conforming JSON
    answer. `reply_with` scripts the next answers instead.

    `batches` serves OpenAI's Files and Batch APIs (`/v1/files`, `/v1/batches`; its pace,
    window and injected failures: see `BatchService`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        parallel: int = 4,
        max_queue: int | None = None,
        latency: float = 0.05,
        token_latency: float = 0.0,
        rpm: int | None = None,
        rpm_window: float = 60.0,
        rate_headers: str = "openai",
        introspection: str | None = None,
        fault_rates: Mapping[str, float] | None = None,
        seed: int = 0,
        embedding_dim: int = 8,
        models: tuple[str, ...] = ("sim-model", "sim-embed"),
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        if max_queue is not None and max_queue < 0:
            raise ValueError("max_queue must be None or non-negative")
        if latency < 0 or token_latency < 0:
            raise ValueError("latencies must be non-negative")
        if rpm is not None and rpm < 1:
            raise ValueError("rpm must be None or positive")
        if not rpm_window > 0:
            raise ValueError("rpm_window must be positive")
        if rate_headers not in _RATE_HEADERS:
            raise ValueError(f"rate_headers must be one of {', '.join(_RATE_HEADERS)}")
        if introspection is not None and introspection not in _INTROSPECTION:
            raise ValueError(f"introspection must be None or one of {', '.join(_INTROSPECTION)}")
        if embedding_dim < 1:
            raise ValueError("embedding_dim must be positive")
        self._host = host
        self._port = port
        self._parallel = parallel
        self._max_queue = max_queue
        self._latency = latency
        self._token_latency = token_latency
        self._rpm = rpm
        self._rpm_window = rpm_window
        self._rate_headers = rate_headers
        self._embedding_dim = embedding_dim
        self._models = tuple(models)
        self._rng = random.Random(seed)
        self._fault_table = self._cumulative(fault_rates or {})

        self._http = HTTPServer(self._handle)
        self._bound_port: int | None = None
        self._stats = ServerStats()
        self._free = parallel
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._injected: list[_Injected] = []
        self._window: deque[float] = deque()
        self._ids = itertools.count(1)
        self._script = _tools.Script()
        self.batches = BatchService()
        self._routes: dict[tuple[str, str], Callable[[Request, Reply, float], Awaitable[None]]] = {
            ("POST", "/api/chat"): self._ollama_generate,
            ("POST", "/api/generate"): self._ollama_generate,
            ("POST", "/api/embed"): self._embed,
            ("POST", "/v1/chat/completions"): self._openai_chat,
            ("POST", "/v1/embeddings"): self._embed,
            ("GET", "/api/tags"): self._listing,
            ("GET", "/api/ps"): self._listing,
            ("GET", "/api/version"): self._listing,
            ("GET", "/v1/models"): self._listing,
        }
        if introspection == "llama.cpp":
            self._routes[("GET", "/props")] = self._llamacpp_props
            self._routes[("GET", "/health")] = self._llamacpp_props
        elif introspection == "vllm":
            self._routes[("GET", "/metrics")] = self._vllm_metrics

    @staticmethod
    def _cumulative(rates: Mapping[str, float]) -> list[tuple[float, Fault]]:
        table: list[tuple[float, Fault]] = []
        total = 0.0
        for kind, rate in rates.items():
            if rate < 0:
                raise ValueError(f"fault rate for {kind!r} is negative")
            total += rate
            table.append((total, Fault(kind)))
        if total > 1:
            raise ValueError("fault rates add up to more than 1")
        return table

    # --- lifecycle and public API ------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (on a free port when `port` is 0)."""
        if self._bound_port is None:
            self._bound_port = await self._http.start(self._host, self._port)

    async def stop(self) -> None:
        """Stop listening and close every connection, cancelling requests in progress."""
        await self._http.stop()
        await self.batches.aclose()
        self._bound_port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL, also the Ollama host: "http://127.0.0.1:PORT"."""
        if self._bound_port is None:
            raise RuntimeError("SimulatedServer is not started")
        return f"http://{self._host}:{self._bound_port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI clients: `url` + "/v1"."""
        return self.url + "/v1"

    @property
    def latency(self) -> float:
        """Seconds each request holds a slot (besides `token_latency`); settable while it
        runs, as a server slowed by other work."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("latencies must be non-negative")
        self._latency = seconds

    @property
    def stats(self) -> ServerStats:
        """The live statistics (see `ServerStats.snapshot` for a frozen copy)."""
        return self._stats

    def reset_stats(self) -> None:
        """Zero the counters in place; the in_flight and waiting gauges keep their values."""
        st = self._stats
        fresh = ServerStats(
            in_flight=st.in_flight,
            waiting=st.waiting,
            peak_in_flight=st.in_flight,
            peak_waiting=st.waiting,
        )
        for f in fields(fresh):
            setattr(st, f.name, getattr(fresh, f.name))

    def inject(
        self,
        fault: Fault | str,
        count: int = 1,
        *,
        retry_after: float | None = None,
        path: str | None = None,
        echo_key: bool = False,
    ) -> None:
        """Answer the next `count` requests whose path starts with `path` (None: any) with `fault`.

        Injected faults are used in the order injected, before the rpm limit and random faults;
        listings (`/api/tags`, `/v1/models`, ...) take them too when `path` lets them.
        `retry_after` (seconds, fractions allowed) sets the 429's retry-after; default 1.
        `echo_key=True` makes the fault's error message show the request's Authorization
        header, as some proxies do. What each fault sends, per protocol and for streamed and
        whole answers: see `Fault`.
        """
        kind = Fault(fault)
        if count < 0:
            raise ValueError("count must be non-negative")
        self._injected.extend(_Injected(kind, retry_after, path, echo_key) for _ in range(count))

    def reply_with(
        self,
        content: str | None = None,
        *,
        tool_calls: Sequence[tuple[str, object]] = (),
        count: int = 1,
    ) -> None:
        """Answer the next `count` chat requests (either protocol) with `content` (None: the
        usual text) and `tool_calls`, (name, arguments) pairs: arguments a JSON value, or a
        string sent as is (OpenAI's arguments are text, so it can be something not JSON)."""
        if count < 0:
            raise ValueError("count must be non-negative")
        calls = tuple((str(name), arguments) for name, arguments in tool_calls)
        self._script.add(_tools.Scripted(content, calls), count)

    # --- request handling --------------------------------------------------------------------

    async def _handle(self, request: Request, responder: Responder) -> None:
        now = time.monotonic()
        path = request.path
        st = self._stats
        st.requests += 1
        st.by_path[path] += 1
        st.arrivals.append((now, path))
        if request.method == "POST":
            with contextlib.suppress(ValueError):
                st.bodies.append(json.loads(request.body))
        azure = _AZURE_PATH.fullmatch(path)
        if azure is not None:  # served, faulted and limited exactly as the OpenAI path
            path = "/v1" + azure[1]
            request = replace(request, path=path)
        reply = Reply(responder, st, openai=path == "/v1" or path.startswith("/v1/"))
        route = self._routes.get((request.method, path))
        if route is None and request.method == "GET" and path.startswith("/v1/models/"):
            route = self._listing
        if route is None and self.batches.serves(path):
            route = self.batches.handle
        if route is None:
            message = (
                f"Invalid URL ({request.method} {path})" if reply.openai else "404 page not found"
            )
            await reply.error(404, message, type_="invalid_request_error")
            return
        injected = self._take_injected(path)
        fault = injected.fault if injected else None
        if fault is None and path in _INFERENCE_PATHS:
            if self._rpm is not None and not await self._admit(reply, now, self._rpm):
                return
            fault = self._random_fault()
        try:
            if fault is not None:
                await self._fault(request, reply, fault, injected)
            else:
                await route(request, reply, now)
        except asyncio.CancelledError:  # the client left, or the server is stopping
            st.disconnected += 1
            raise

    def _take_injected(self, path: str) -> _Injected | None:
        for i, item in enumerate(self._injected):
            if item.path is None or path.startswith(item.path):
                return self._injected.pop(i)
        return None

    def _random_fault(self) -> Fault | None:
        if not self._fault_table:
            return None
        r = self._rng.random()
        return next((fault for bound, fault in self._fault_table if r < bound), None)

    async def _admit(self, reply: Reply, now: float, rpm: int) -> bool:
        """Apply the rpm window: record the request, or answer 429 and return False."""
        window, span = self._window, self._rpm_window
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= rpm:
            wait = window[0] + span - now
            await reply.error(
                429,
                f"Rate limit reached for requests per min (RPM): Limit {rpm}, Used {len(window)},"
                f" Requested 1. Please try again in {proto.go_duration(wait)}.",
                type_="requests",
                code="rate_limit_exceeded",
                headers=[
                    ("retry-after", str(max(1, math.ceil(wait)))),
                    *self._limit_headers(rpm, 0, wait),
                ],
            )
            return False
        window.append(now)
        if reply.openai:
            reply.headers = self._limit_headers(rpm, rpm - len(window), window[0] + span - now)
        return True

    def _limit_headers(self, rpm: int, remaining: int, reset: float) -> list[tuple[str, str]]:
        """The rate headers chosen by `rate_headers`: OpenAI's x-ratelimit-*, the IETF ones."""
        kind = self._rate_headers
        headers = []
        if kind in ("openai", "both"):
            headers += proto.limit_headers(rpm, remaining, reset)
        if kind in ("ietf", "both"):
            headers += proto.ietf_limit_headers(rpm, remaining, reset, self._rpm_window)
        return headers

    async def _fault(
        self, request: Request, reply: Reply, fault: Fault, injected: _Injected | None
    ) -> None:
        target = _faults.describe(
            request,
            openai=reply.openai,
            models=self._models,
            embedding_dim=self._embedding_dim,
            request_id=self._request_id(),
            echo_key=injected is not None and injected.echo_key,
        )
        retry_after = injected.retry_after if injected else None
        await _faults.answer(fault, target, reply, retry_after=retry_after, rpm=self._rpm)

    def _request_id(self) -> str:
        return f"chatcmpl-sim{next(self._ids):08d}"

    # --- slots -------------------------------------------------------------------------------

    async def _acquire(self, reply: Reply) -> float | None:
        """Take a slot, waiting in FIFO order; returns the seconds waited, None if answered busy."""
        st = self._stats
        if self._free and not self._waiters:
            self._free -= 1
            waited = 0.0
        elif self._max_queue is not None and len(self._waiters) >= self._max_queue:
            await reply.error(503, proto.BUSY_MESSAGE, type_="api_error")
            return None
        else:
            start = time.monotonic()
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            st.waiting += 1
            st.peak_waiting = max(st.peak_waiting, st.waiting)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._hand_over()  # the slot reached us as we were cancelled: pass it on
                elif fut in self._waiters:
                    self._waiters.remove(fut)
                raise
            finally:
                st.waiting -= 1
            waited = time.monotonic() - start
        st.in_flight += 1
        st.peak_in_flight = max(st.peak_in_flight, st.in_flight)
        return waited

    def _release(self) -> None:
        self._stats.in_flight -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        """Give a free slot to the first live waiter, or back to the pool."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1

    # --- endpoints ---------------------------------------------------------------------------

    @staticmethod
    def _body(request: Request) -> proto.JSONObject:
        try:
            body = json.loads(request.body)
        except ValueError as exc:
            raise proto.BadRequest(f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise proto.BadRequest("request body must be a JSON object")
        return body

    async def _ollama_generate(self, request: Request, reply: Reply, arrival: float) -> None:
        chat = request.path == "/api/chat"
        try:
            body = self._body(request)
            gen = proto.parse_ollama_chat(body) if chat else proto.parse_ollama_generate(body)
        except proto.BadRequest as exc:
            await reply.error(400, str(exc), type_="invalid_request_error")
            return
        calls: list[_tools.Call] = []
        if chat:
            gen, calls = _tools.shape(
                gen, body, openai=False, scripted=self._script.take(), call_id=""
            )
        waited = await self._acquire(reply)
        if waited is None:
            return
        try:
            eval_time = self._token_latency * len(gen.tokens)
            if gen.stream:
                await _sleep(self._latency)
                await reply.start("application/x-ndjson")
                for token in gen.tokens:
                    await _sleep(self._token_latency)
                    await reply.write(ndjson(proto.ollama_chunk(gen, [token], chat=chat)))
                if calls:  # Ollama streams each call whole, before the closing line
                    chunk = proto.ollama_chunk(gen, [], chat=chat)
                    chunk["message"]["tool_calls"] = _tools.ollama_calls(calls)
                    await reply.write(ndjson(chunk))
            else:
                await _sleep(self._latency + eval_time)
            timing = proto.Timing(time.monotonic() - arrival, waited, self._latency, eval_time)
            final = proto.ollama_final(gen, timing, chat=chat, streamed=gen.stream)
            if calls and not gen.stream:
                final["message"]["tool_calls"] = _tools.ollama_calls(calls)
            if gen.stream:
                await reply.end(ndjson(final))
            else:
                await reply.json(final)
        finally:
            self._release()

    async def _openai_chat(self, request: Request, reply: Reply, arrival: float) -> None:
        try:
            body = self._body(request)
            gen = proto.parse_openai_chat(body)
        except proto.BadRequest as exc:
            await reply.error(400, str(exc), type_="invalid_request_error")
            return
        request_id = self._request_id()
        gen, calls = _tools.shape(
            gen,
            body,
            openai=True,
            scripted=self._script.take(),
            call_id="call_" + request_id.removeprefix("chatcmpl-"),
        )
        if await self._acquire(reply) is None:
            return
        try:
            if not gen.stream:
                await _sleep(self._latency + self._token_latency * len(gen.tokens))
                payload = proto.openai_completion(gen, request_id)
                if calls:
                    payload = _tools.openai_message_calls(payload, calls)
                await reply.json(payload)
                return
            await _sleep(self._latency)
            await reply.start("text/event-stream; charset=utf-8")
            role = {"role": "assistant", "content": ""}
            await reply.write(sse(proto.openai_chunk(gen, request_id, delta=role)))
            for token in gen.tokens:
                await _sleep(self._token_latency)
                await reply.write(sse(proto.openai_chunk(gen, request_id, token=token)))
            for delta in _tools.openai_call_deltas(calls):
                await reply.write(sse(proto.openai_chunk(gen, request_id, delta=delta)))
            tail = sse(proto.openai_chunk(gen, request_id, finish=True))
            if gen.include_usage:
                tail += sse(proto.openai_chunk(gen, request_id, usage=True))
            await reply.end(tail + b"data: [DONE]\n\n")
        finally:
            self._release()

    async def _embed(self, request: Request, reply: Reply, arrival: float) -> None:
        try:
            req = proto.parse_embed(self._body(request), openai=reply.openai)
        except proto.BadRequest as exc:
            await reply.error(400, str(exc), type_="invalid_request_error")
            return
        self._stats.embed_inputs += len(req.inputs)
        waited = await self._acquire(reply)
        if waited is None:
            return
        try:
            await _sleep(self._latency)
            dim = req.dimensions or self._embedding_dim
            vectors = [proto.embedding(text, dim) for text in req.inputs]
            if reply.openai:
                await reply.json(proto.openai_embeddings(req, vectors))
            else:
                timing = proto.Timing(time.monotonic() - arrival, waited, self._latency, 0.0)
                await reply.json(proto.ollama_embed(req, vectors, timing))
        finally:
            self._release()

    async def _listing(self, request: Request, reply: Reply, arrival: float) -> None:
        await reply.json(proto.listing(request.path, self._models))

    async def _llamacpp_props(self, request: Request, reply: Reply, arrival: float) -> None:
        if request.path == "/health":
            payload: object = {"status": "ok"}
        else:
            payload = proto.llamacpp_props(self._parallel, self._models[0])
        await reply.page(JSON_TYPE[1], dumps(payload))

    async def _vllm_metrics(self, request: Request, reply: Reply, arrival: float) -> None:
        page = proto.vllm_metrics(self._stats.in_flight, self._stats.waiting, self._models[0])
        await reply.page("text/plain; version=0.0.4; charset=utf-8", page.encode())
