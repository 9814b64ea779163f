"""The simulated LLM server: routing, slots and wait queue, rate limit, faults and statistics.

`SimulatedServer` answers Ollama-native (`/api/*`), OpenAI (`/v1/*`) and Azure OpenAI
(`/openai/deployments/<name>/*`, served as `/v1/*`) requests on loopback; the wire payloads come
from `_protocols`, the fault answers from `_faults`, the HTTP/1.1 plumbing from `_http`, the
answers themselves from `_handlers`, the slots from `_slots` and the rpm limit from `_ratelimit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from types import TracebackType
from typing import Self

from . import _faults, _tools
from ._batches import BatchService
from ._faults import Fault
from ._handlers import Handlers
from ._http import HTTPServer, Request, Responder
from ._ratelimit import RATE_HEADERS, RequestWindow
from ._reply import Reply, ServerStats
from ._slots import Slots

__all__ = ["Fault", "ServerStats", "SimulatedServer"]

_INFERENCE_PATHS = frozenset(
    {"/api/chat", "/api/generate", "/api/embed", "/v1/chat/completions", "/v1/embeddings"}
)
_INTROSPECTION = ("llama.cpp", "vllm")
# Azure OpenAI's deployment paths (`AsyncAzureOpenAI`), served as the OpenAI path in group 1.
_AZURE_PATH = re.compile(r"/openai/deployments/[^/]+(/chat/completions|/embeddings)")


@dataclass(frozen=True, slots=True)
class _Injected:
    fault: Fault
    retry_after: float | None
    path: str | None
    echo_key: bool = False


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
        if rate_headers not in RATE_HEADERS:
            raise ValueError(f"rate_headers must be one of {', '.join(RATE_HEADERS)}")
        if introspection is not None and introspection not in _INTROSPECTION:
            raise ValueError(f"introspection must be None or one of {', '.join(_INTROSPECTION)}")
        if embedding_dim < 1:
            raise ValueError("embedding_dim must be positive")
        self._host = host
        self._port = port
        self._rpm = rpm
        self._embedding_dim = embedding_dim
        self._models = tuple(models)
        self._rng = random.Random(seed)
        self._fault_table = self._cumulative(fault_rates or {})

        self._http = HTTPServer(self._handle)
        self._bound_port: int | None = None
        self._stats = ServerStats()
        self._injected: list[_Injected] = []
        self._window = None if rpm is None else RequestWindow(rpm, rpm_window, rate_headers)
        self._script = _tools.Script()
        self._handlers = answers = Handlers(
            slots=Slots(parallel, max_queue, self._stats),
            stats=self._stats,
            script=self._script,
            parallel=parallel,
            latency=latency,
            token_latency=token_latency,
            embedding_dim=embedding_dim,
            models=self._models,
        )
        self.batches = BatchService()
        self._routes: dict[tuple[str, str], Callable[[Request, Reply, float], Awaitable[None]]] = {
            ("POST", "/api/chat"): answers.ollama_generate,
            ("POST", "/api/generate"): answers.ollama_generate,
            ("POST", "/api/embed"): answers.embed,
            ("POST", "/v1/chat/completions"): answers.openai_chat,
            ("POST", "/v1/embeddings"): answers.embed,
            ("GET", "/api/tags"): answers.listing,
            ("GET", "/api/ps"): answers.listing,
            ("GET", "/api/version"): answers.listing,
            ("GET", "/v1/models"): answers.listing,
        }
        if introspection == "llama.cpp":
            self._routes[("GET", "/props")] = answers.llamacpp_props
            self._routes[("GET", "/health")] = answers.llamacpp_props
        elif introspection == "vllm":
            self._routes[("GET", "/metrics")] = answers.vllm_metrics

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
        return self._handlers.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("latencies must be non-negative")
        self._handlers.latency = seconds

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
            route = self._handlers.listing
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
            if self._window is not None and not await self._window.admit(reply, now):
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

    async def _fault(
        self, request: Request, reply: Reply, fault: Fault, injected: _Injected | None
    ) -> None:
        target = _faults.describe(
            request,
            openai=reply.openai,
            models=self._models,
            embedding_dim=self._embedding_dim,
            request_id=self._handlers.request_id(),
            echo_key=injected is not None and injected.echo_key,
        )
        retry_after = injected.retry_after if injected else None
        await _faults.answer(fault, target, reply, retry_after=retry_after, rpm=self._rpm)
