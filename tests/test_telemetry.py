"""Telemetry through the simulated server: the Observer events, and the OpenTelemetry spans and
metrics built on them (the real SDK with in-memory exporters, providers passed explicitly)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmclient import (
    BaseLLMClient,
    ConcurrencyProfile,
    LatencyLimit,
    LLMError,
    OllamaClient,
    OpenAIClient,
)
from llmclient.telemetry import (
    AttemptInfo,
    Observer,
    RequestInfo,
    add_observer,
    enable_opentelemetry,
    observers,
    remove_observer,
    serve_prometheus,
)
from llmclient.testing import SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]
SECRET = "sk-llmclient-telemetry-7f3a9c1e5d"  # distinctive: searched for in everything emitted


@dataclass
class OTel:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of metric `name` collected now."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def value(self, name: str) -> float:
        """The sum of a counter, gauge or up-down counter over all its attribute sets."""
        return sum(point.value for point in self.points(name))

    def observer(self, capture_content: bool = False) -> Observer:
        return enable_opentelemetry(
            self.tracer_provider,
            self.meter_provider,
            capture_content=capture_content,
            register=False,
        )


@pytest.fixture
def otel() -> Iterator[OTel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield OTel(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


class Recording(Observer):
    """Every event, as (method, detail)."""

    def __init__(self, capture_content: bool = False) -> None:
        self.capture_content = capture_content
        self.events: list[tuple[str, Any]] = []
        self.requests: list[RequestInfo] = []

    def request_started(self, request: RequestInfo) -> None:
        self.requests.append(request)
        self.events.append(("request_started", request.operation))

    def slot_wait_started(self, request: RequestInfo) -> None:
        self.events.append(("slot_wait_started", request.attempts))

    def slot_acquired(self, request: RequestInfo, waited: float) -> None:
        assert waited >= 0
        self.events.append(("slot_acquired", request.attempts))

    def attempt_finished(self, request: RequestInfo, attempt: AttemptInfo) -> None:
        self.events.append(("attempt_finished", attempt))

    def retry_scheduled(self, request: RequestInfo, error: LLMError, delay: float) -> None:
        self.events.append(("retry_scheduled", error.kind))

    def limit_changed(self, request: RequestInfo, limit: int, previous: int) -> None:
        self.events.append(("limit_changed", (previous, limit)))

    def endpoint_paused(self, request: RequestInfo, seconds: float) -> None:
        self.events.append(("endpoint_paused", seconds))

    def request_finished(self, request: RequestInfo) -> None:
        self.events.append(("request_finished", request.error))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def make_client(
    provider: str, server: SimulatedServer, observer: Observer | None = None, **options: Any
) -> BaseLLMClient:
    options.setdefault("profile", ConcurrencyProfile(name="test", retry=FAST_RETRY))
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, observer=observer, **options)
    return OpenAIClient(
        "sim-model", base_url=server.openai_base_url, api_key=SECRET, observer=observer, **options
    )


PROVIDERS = ["ollama", "openai"]


# --- the callback interface -------------------------------------------------------------------


async def test_observer_sees_each_step_of_a_request_in_order(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("500")
    recording = Recording()
    async with make_client("ollama", server, recording) as client:
        completion = await client.generate("hello", max_tokens=3)
    assert recording.names() == [
        "request_started",
        "slot_wait_started",
        "slot_acquired",
        "attempt_finished",
        "retry_scheduled",
        "slot_wait_started",
        "slot_acquired",
        "attempt_finished",
        "request_finished",
    ]
    first, second = (e[1] for e in recording.events if e[0] == "attempt_finished")
    assert (first.number, first.admitted, first.error.kind) == (1, True, "server_error")
    assert (second.number, second.error) == (2, None)
    (request,) = recording.requests
    assert (request.operation, request.provider, request.model) == ("chat", "ollama", "sim-model")
    assert request.attempts == 2 and request.error is None
    assert request.usage == completion.usage and request.response_model == "sim-model"
    assert request.output is None  # the answer text only for an observer that asks for it
    assert request.endpoint == server.url and server.stats.by_path["/api/chat"] == 2


async def test_a_cut_limit_and_a_server_pause_are_reported(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("503")
    server.inject("429", retry_after=0.05)
    recording = Recording()
    limit = LatencyLimit(initial=4, max_limit=8)
    profile = ConcurrencyProfile(name="test", retry=FAST_RETRY, max_concurrent=limit)
    async with make_client("ollama", server, recording, profile=profile) as client:
        await client.generate("hello", max_tokens=2)
    assert ("limit_changed", (4, 3)) in recording.events
    assert ("endpoint_paused", 0.05) in recording.events
    overloads = [e[1] for e in recording.events if e[0] == "attempt_finished" and e[1].overload]
    assert [a.error.kind for a in overloads] == ["server_busy", "rate_limited"]


async def test_global_observers_see_every_client_until_removed(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    recording = Recording()
    async with make_client("ollama", server) as client:  # made before the observer
        add_observer(recording)
        try:
            assert recording in observers()
            await client.generate("one", max_tokens=2)
        finally:
            remove_observer(recording)
        await client.generate("two", max_tokens=2)
    assert recording not in observers()
    assert recording.names().count("request_started") == 1
    with pytest.raises(TypeError, match="observer="):
        add_observer(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="observer="):
        OllamaClient("m", observer=print)  # type: ignore[arg-type]


async def test_a_failing_observer_never_fails_the_request(
    simulated_server_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Observer):
        def slot_acquired(self, request: RequestInfo, waited: float) -> None:
            raise RuntimeError("observer bug")

    server = await simulated_server_factory(latency=0.001)
    async with make_client("ollama", server, Broken()) as client:
        with caplog.at_level(logging.ERROR, logger="llmclient"):
            answers = [await client.generate("hi", max_tokens=2) for _ in range(3)]
    assert len(answers) == 3 and server.stats.completed == 3
    logged = [r for r in caplog.records if "failed in slot_acquired" in r.getMessage()]
    assert len(logged) == 1  # once per observer and method, not once per request


async def test_a_request_cancelled_while_waiting_finishes_its_attempt(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.3, parallel=1)
    recording = Recording()
    profile = ConcurrencyProfile(name="test", retry=FAST_RETRY, max_concurrent=1)
    async with make_client("ollama", server, recording, profile=profile) as client:
        holder = asyncio.create_task(client.generate("first", max_tokens=1))
        waiter = asyncio.create_task(client.generate("second", max_tokens=1))
        while client.stats.waiting < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await holder
    abandoned = [e[1] for e in recording.events if e[0] == "attempt_finished" and not e[1].admitted]
    assert len(abandoned) == 1 and abandoned[0].cancelled
    finished = [e[1] for e in recording.events if e[0] == "request_finished"]
    assert sum(isinstance(error, asyncio.CancelledError) for error in finished) == 1


# --- OpenTelemetry spans ---------------------------------------------------------------------


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_chat_span_follows_the_genai_conventions(
    provider: str, simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client(provider, server, otel.observer()) as client:
        completion = await client.generate("hello there", max_tokens=4)
    (span,) = otel.finished()
    assert span.name == "chat sim-model" and span.kind is SpanKind.CLIENT
    found = attributes(span)
    assert completion.usage is not None
    port = int(server.url.rsplit(":", 1)[1])
    assert found == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": "sim-model",
        "gen_ai.response.model": completion.model,
        "gen_ai.response.finish_reasons": (completion.finish_reason,),
        "gen_ai.usage.input_tokens": completion.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": completion.usage.completion_tokens,
        "server.address": "127.0.0.1",
        "server.port": port,
        "llmclient.attempts": 1,
    }
    assert completion.usage.completion_tokens == 4
    assert "gen_ai.input.messages" not in found  # no prompt text unless asked
    assert [event.name for event in span.events] == ["llmclient.slot_acquired"]
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_span_ends_with_the_stream(
    provider: str, simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client(provider, server, otel.observer()) as client:
        async with client.stream("stream me", max_tokens=3) as deltas:
            parts = [await anext(deltas)]
            assert otel.finished() == []  # open while the stream is read
            parts += [delta async for delta in deltas]
        usage = deltas.usage
    assert parts
    (span,) = otel.finished()
    assert span.name == "chat sim-model" and span.kind is SpanKind.CLIENT
    found = attributes(span)
    assert found["gen_ai.operation.name"] == "chat"
    assert found["gen_ai.provider.name"] == provider
    if provider == "ollama":  # the simulator reports a stream's usage in Ollama's last chunk
        assert usage is not None
    if usage is not None:
        assert found["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert found["gen_ai.usage.output_tokens"] == usage.completion_tokens
    else:
        assert "gen_ai.usage.input_tokens" not in found
    assert found["gen_ai.response.finish_reasons"] == (deltas.finish_reason,)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_embed_span_counts_input_tokens_only(
    provider: str, simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    client = make_client(provider, server, otel.observer(), embed_model="sim-embed")
    async with client:
        vectors = await client.embed(["alpha", "beta", "gamma"])
    assert len(vectors) == 3
    (span,) = otel.finished()
    found = attributes(span)
    assert span.name == "embeddings sim-embed"
    assert found["gen_ai.operation.name"] == "embeddings"
    assert found["gen_ai.request.model"] == "sim-embed"
    assert "gen_ai.usage.output_tokens" not in found
    token_types = {
        p.attributes["gen_ai.token.type"] for p in otel.points("gen_ai.client.token.usage")
    }
    assert token_types <= {"input"}
    if "gen_ai.usage.input_tokens" in found:
        (point,) = otel.points("gen_ai.client.token.usage")
        assert point.sum == found["gen_ai.usage.input_tokens"] > 0


async def test_a_retried_request_is_one_span_with_its_retry_events(
    simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("500", count=2)
    async with make_client("openai", server, otel.observer()) as client:
        completion = await client.generate("retry me", max_tokens=2)
    assert completion.attempts == 3
    assert server.stats.by_path["/v1/chat/completions"] == 3
    (span,) = otel.finished()
    assert attributes(span)["llmclient.attempts"] == 3
    assert "error.type" not in attributes(span)
    names = [event.name for event in span.events]
    assert names == ["llmclient.slot_acquired", "llmclient.retry"] * 2 + ["llmclient.slot_acquired"]
    retries = [dict(e.attributes or {}) for e in span.events if e.name == "llmclient.retry"]
    assert [r["llmclient.attempt"] for r in retries] == [1, 2]
    assert {r["error.type"] for r in retries} == {"server_error"}
    assert {r["http.response.status_code"] for r in retries} == {500}
    assert otel.value("llmclient.retries") == 2


async def test_a_failed_request_has_error_type_on_span_and_duration(
    simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("500", count=FAST_RETRY.max_attempts)
    async with make_client("ollama", server, otel.observer()) as client:
        with pytest.raises(LLMError) as caught:
            await client.generate("fail", max_tokens=2)
    (span,) = otel.finished()
    assert attributes(span)["error.type"] == str(caught.value.kind) == "server_error"
    assert span.status.status_code is StatusCode.ERROR
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert point.attributes["error.type"] == "server_error" and point.count == 1
    assert otel.points("gen_ai.client.token.usage") == []


async def test_the_span_is_current_while_the_request_runs(
    simulated_server_factory: Factory, otel: OTel
) -> None:
    """A span made inside the request (e.g. by HTTP instrumentation) is the GenAI span's child."""
    from opentelemetry import trace

    tracer = otel.tracer_provider.get_tracer("test")
    server = await simulated_server_factory(latency=0.001)

    class Child(Observer):
        def slot_acquired(self, request: RequestInfo, waited: float) -> None:
            tracer.start_span("inner").end()

    child = Child()
    async with make_client("ollama", server, otel.observer()) as client:
        add_observer(child)
        try:
            with tracer.start_as_current_span("outer"):
                await client.generate("hi", max_tokens=1)
        finally:
            remove_observer(child)
    spans = {span.name: span for span in otel.finished()}
    genai, outer, inner = spans["chat sim-model"], spans["outer"], spans["inner"]
    assert genai.parent is not None and genai.parent.span_id == outer.context.span_id
    assert inner.parent is not None and inner.parent.span_id == genai.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached afterwards


async def test_capture_content_puts_prompt_and_answer_on_the_span(
    simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("ollama", server, otel.observer(capture_content=True)) as client:
        completion = await client.generate("what is up", max_tokens=3)
        async with client.stream("stream this", max_tokens=3) as deltas:
            streamed = "".join([delta async for delta in deltas])
    chat, stream = otel.finished()
    sent = json.loads(attributes(chat)["gen_ai.input.messages"])
    assert sent == [{"role": "user", "parts": [{"type": "text", "content": "what is up"}]}]
    (answer,) = json.loads(attributes(chat)["gen_ai.output.messages"])
    assert answer["parts"][0]["content"] == completion.text
    (streamed_answer,) = json.loads(attributes(stream)["gen_ai.output.messages"])
    assert streamed_answer["parts"][0]["content"] == streamed


# --- OpenTelemetry metrics -------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_token_histograms_equal_the_usage_the_server_reported(
    provider: str, simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client(provider, server, otel.observer()) as client:
        completions = await asyncio.gather(
            *(client.generate(f"question number {i}", max_tokens=1 + i % 5) for i in range(12))
        )
    usages = [c.usage for c in completions if c.usage is not None]
    assert len(usages) == 12
    by_type = {
        p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")
    }
    assert by_type["input"].sum == sum(u.prompt_tokens for u in usages)
    assert by_type["output"].sum == sum(u.completion_tokens for u in usages)
    assert by_type["input"].count == by_type["output"].count == 12
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 12 and duration.attributes["gen_ai.operation.name"] == "chat"


async def test_limiter_metrics_track_a_run(simulated_server_factory: Factory, otel: OTel) -> None:
    server = await simulated_server_factory(latency=0.05, parallel=2)
    profile = ConcurrencyProfile(name="test", retry=FAST_RETRY, max_concurrent=2)
    async with make_client("ollama", server, otel.observer(), profile=profile) as client:
        run = asyncio.gather(*(client.generate(f"q{i}", max_tokens=1) for i in range(10)))
        async with asyncio.timeout(30):
            while client.stats.waiting < 8:  # noqa: ASYNC110 (2 on the wire, 8 waiting)
                await asyncio.sleep(0.001)
        assert otel.value("llmclient.requests.waiting") == 8
        assert otel.value("llmclient.requests.in_flight") == 2
        await run
    assert server.stats.peak_in_flight <= 2
    assert otel.value("llmclient.requests.waiting") == 0
    assert otel.value("llmclient.requests.in_flight") == 0
    assert otel.value("llmclient.concurrency.limit") == 2
    (wait,) = otel.points("llmclient.slot.wait.duration")
    assert wait.count == 10 and wait.sum > 0
    (point,) = otel.points("llmclient.requests.in_flight")
    assert point.attributes == {
        "gen_ai.provider.name": "ollama",
        "server.address": "127.0.0.1",
        "server.port": int(server.url.rsplit(":", 1)[1]),
    }


async def test_overload_answers_and_pauses_are_counted(
    simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("429", retry_after=0.05)
    server.inject("503")
    async with make_client("openai", server, otel.observer()) as client:
        await client.generate("busy?", max_tokens=1)
    kinds = {
        p.attributes["error.type"]: p.value for p in otel.points("llmclient.attempts.overloaded")
    }
    assert kinds == {"rate_limited": 1, "server_busy": 1}
    assert otel.value("llmclient.endpoint.pause") == pytest.approx(0.05)
    assert otel.value("llmclient.retries") == 2


async def test_nothing_emitted_holds_the_api_key(
    simulated_server_factory: Factory, otel: OTel
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("500")
    server.inject("echo_key", path="/v1/embeddings")  # a 401 whose message shows the key
    observer = otel.observer(capture_content=True)
    client = make_client("openai", server, observer, embed_model="sim-embed")
    async with client:
        await client.generate(f"hello {SECRET[:6]}", max_tokens=2)
        async with client.stream("stream", max_tokens=2) as deltas:
            _ = [delta async for delta in deltas]
        with pytest.raises(LLMError, match="Incorrect API key"):
            await client.embed("unauthorised")
    spans = otel.finished()
    assert len(spans) == 3
    assert spans[-1].status.description is not None
    assert "Incorrect API key" in spans[-1].status.description
    emitted: list[str] = []
    for span in spans:
        emitted += [repr(attributes(span)), repr(span.status.description), repr(span.resource)]
        emitted += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
    data = otel.reader.get_metrics_data()
    assert data is not None
    emitted.append(data.to_json())
    text = "\n".join(emitted)
    assert "gen_ai.input.messages" in text  # content was captured, and still no key
    assert SECRET not in text


# --- exporting and the optional extra ---------------------------------------------------------


async def test_prometheus_endpoint_serves_llmclient_metrics(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    with serve_prometheus(0) as prometheus:
        assert prometheus.url.startswith("http://127.0.0.1:")
        async with make_client("ollama", server, prometheus.observer) as client:
            await asyncio.gather(*(client.generate(f"q{i}", max_tokens=2) for i in range(3)))
        page = await asyncio.to_thread(scrape, prometheus.url)
    assert "gen_ai_client_operation_duration_seconds_count{" in page
    assert "llmclient_requests_in_flight" in page
    assert "llmclient_concurrency_limit" in page
    counts = [line for line in page.splitlines() if 'gen_ai_token_type="output"' in line]
    assert any(line.split()[-1] == "3.0" for line in counts if "_count" in line)
    with pytest.raises(ValueError, match="port=-1"):
        serve_prometheus(-1)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # loopback only
        body: bytes = answer.read()
    return body.decode()


def run_python(*parts: str) -> subprocess.CompletedProcess[str]:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_and_clients_load_no_opentelemetry() -> None:
    done = run_python(
        """
        import sys, llmclient
        from llmclient import OllamaClient
        OllamaClient("m")
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


SERVE_ONE_REQUEST = """
    import asyncio
    from llmclient import OllamaClient
    from llmclient.testing import SimulatedServer

    async def ask():
        async with SimulatedServer(latency=0.001) as server:
            async with OllamaClient("sim-model", host=server.url) as client:
                return await client.generate("hi", max_tokens=2)
"""


def test_without_opentelemetry_everything_works_and_nothing_is_emitted() -> None:
    done = run_python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        """,
        SERVE_ONE_REQUEST,
        """
        from llmclient import telemetry
        print(asyncio.run(ask()).text)
        print(telemetry.detect_opentelemetry(), telemetry.observers())
        try:
            telemetry.enable_opentelemetry()
        except ImportError as error:
            print("ImportError")
        """,
    )
    assert done.returncode == 0, done.stderr
    answer, detected, refused = done.stdout.splitlines()
    assert answer.startswith("Simulated reply")
    assert detected == "None ()" and refused == "ImportError"


def test_a_globally_configured_provider_turns_telemetry_on() -> None:
    done = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        """,
        SERVE_ONE_REQUEST,
        """
        asyncio.run(ask())
        print([span.name for span in spans.get_finished_spans()])
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['chat sim-model']"


def test_no_provider_configured_means_no_observer() -> None:
    done = run_python(
        """
        import opentelemetry.trace, opentelemetry.metrics  # imported, but nothing configured
        """,
        SERVE_ONE_REQUEST,
        """
        from llmclient import telemetry
        asyncio.run(ask())
        print(telemetry.observers())
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "()"
