"""`OpenTelemetryObserver`: GenAI spans and metrics, and llmclient's limiter metrics.

Follows the OpenTelemetry GenAI semantic conventions: one CLIENT span `"{operation} {model}"`
per request (retries are its events), the `gen_ai.client.*` histograms, and `llmclient.*`
instruments for what the limiter does. Imported only when OpenTelemetry is enabled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmclient._version import __version__
from llmclient.errors import LLMError
from llmclient.telemetry._events import AttemptInfo, Observer, RequestInfo

__all__ = ["OpenTelemetryObserver", "error_type", "provider_name"]

Attributes = dict[str, str | int | float]

SCOPE = "llmclient"
# The GenAI conventions' advisory bucket boundaries.
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48]
DURATION_BUCKETS += [40.96, 81.92]
TOKEN_BUCKETS = [float(4**i) for i in range(14)]  # 1, 4, 16, ... 67108864
_PROVIDERS = {"azure": "azure.ai.openai"}  # llmclient's name -> gen_ai.provider.name


def provider_name(provider: str) -> str:
    """`gen_ai.provider.name` for an llmclient provider name."""
    return _PROVIDERS.get(provider, provider)


def error_type(error: BaseException) -> str:
    """`error.type`: an llmclient error's kind, else the exception's class name."""
    if isinstance(error, LLMError):
        return str(error.kind)
    return type(error).__qualname__


@lru_cache(maxsize=256)
def _server(endpoint: str) -> tuple[tuple[str, str | int], ...]:
    """`server.address` and `server.port` of an endpoint URL (the port implied by the scheme
    when the URL has none)."""
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return ()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return (("server.address", parts.hostname),)
    return (("server.address", parts.hostname), ("server.port", port))


class _Endpoint:
    """One endpoint's live counts, read by the observable instruments when metrics are
    collected (cheaper than a measurement at every change)."""

    __slots__ = ("attributes", "in_flight", "limit", "waiting")

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = attributes
        self.waiting = self.in_flight = 0
        self.limit: int | None = None


class _Request:
    """What the observer keeps for one request: its span, attribute sets and endpoint."""

    __slots__ = ("attributes", "endpoint", "span", "token")

    def __init__(self, span: Any, token: Any, attributes: Attributes, endpoint: _Endpoint):
        self.span, self.token = span, token
        self.attributes, self.endpoint = attributes, endpoint


class OpenTelemetryObserver(Observer):
    """Emits spans through `tracer_provider` and metrics through `meter_provider`.

    Either defaults to OpenTelemetry's global provider. Prompt and answer text go on spans
    only with `capture_content=True`; API keys never do (llmclient never gives them to
    observers).
    """

    def __init__(
        self,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        *,
        capture_content: bool = False,
    ) -> None:
        self.capture_content = capture_content
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._slot_wait = meter.create_histogram(
            "llmclient.slot.wait.duration",
            unit="s",
            description="Time an attempt waited for admission (pause, rate limits, a slot)",
            explicit_bucket_boundaries_advisory=[0.0, *DURATION_BUCKETS],
        )
        self._endpoints: dict[str, _Endpoint] = {}
        meter.create_observable_up_down_counter(
            "llmclient.requests.in_flight",
            [self._observe("in_flight")],
            unit="{request}",
            description="Attempts on the wire",
        )
        meter.create_observable_up_down_counter(
            "llmclient.requests.waiting",
            [self._observe("waiting")],
            unit="{request}",
            description="Attempts waiting for admission",
        )
        meter.create_observable_gauge(
            "llmclient.concurrency.limit",
            [self._observe("limit")],
            unit="{request}",
            description="The endpoint's concurrency limit in force",
        )
        self._retries = meter.create_counter(
            "llmclient.retries", unit="{retry}", description="Retries scheduled"
        )
        self._overloaded = meter.create_counter(
            "llmclient.attempts.overloaded",
            unit="{attempt}",
            description="Attempts refused or timed out from overload (429, 503 busy, timeout)",
        )
        self._paused = meter.create_counter(
            "llmclient.endpoint.pause",
            unit="s",
            description="Seconds of pause servers asked for (Retry-After)",
        )

    def _observe(self, field: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for endpoint in list(self._endpoints.values()):
                value = getattr(endpoint, field)
                if value is not None:
                    yield Observation(value, endpoint.attributes)

        return observe

    def _endpoint(self, provider: str, url: str) -> _Endpoint:
        key = f"{provider} {url}"
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            attributes: Attributes = {"gen_ai.provider.name": provider_name(provider)}
            attributes.update(_server(url))
            endpoint = self._endpoints[key] = _Endpoint(attributes)
        return endpoint

    # ------------------------------------------------------------------ events
    def request_started(self, request: RequestInfo) -> None:
        """Open the request's CLIENT span (current for the call, so HTTP spans nest in it)."""
        endpoint = self._endpoint(request.provider, request.endpoint)
        attributes: Attributes = {"gen_ai.operation.name": request.operation}
        attributes.update(endpoint.attributes)
        if request.model:
            attributes["gen_ai.request.model"] = request.model
        name = f"{request.operation} {request.model}" if request.model else request.operation
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        if self.capture_content and request.messages is not None:
            span.set_attribute("gen_ai.input.messages", _input_messages(request.messages))
        token = None
        if not request.streaming:  # a stream is read across tasks: it cannot be current
            token = context.attach(trace.set_span_in_context(span))
        request.state[self] = _Request(span, token, attributes, endpoint)

    def slot_wait_started(self, request: RequestInfo) -> None:
        """One more attempt waiting."""
        self._mine(request).endpoint.waiting += 1

    def slot_acquired(self, request: RequestInfo, waited: float) -> None:
        """Waiting -> in flight; the wait goes on the span and the histogram."""
        mine = self._mine(request)
        endpoint = mine.endpoint
        endpoint.waiting -= 1
        endpoint.in_flight += 1
        self._slot_wait.record(waited, endpoint.attributes)
        mine.span.add_event(
            "llmclient.slot_acquired",
            {"llmclient.attempt": request.attempts, "llmclient.slot.wait": waited},
        )

    def attempt_finished(self, request: RequestInfo, attempt: AttemptInfo) -> None:
        """One fewer in flight (or waiting); the limit in force; overload answers."""
        endpoint = self._mine(request).endpoint
        if attempt.admitted:
            endpoint.in_flight -= 1
        else:
            endpoint.waiting -= 1
        endpoint.limit = attempt.concurrency_limit
        if attempt.overload and attempt.error is not None:
            kind = error_type(attempt.error)
            self._overloaded.add(1, {**endpoint.attributes, "error.type": kind})

    def retry_scheduled(self, request: RequestInfo, error: LLMError, delay: float) -> None:
        """A span event and a count per retry."""
        mine = self._mine(request)
        kind = error_type(error)
        self._retries.add(1, {**mine.endpoint.attributes, "error.type": kind})
        event: Attributes = {
            "llmclient.attempt": request.attempts,
            "error.type": kind,
            "llmclient.retry.delay": delay,
        }
        if error.status_code is not None:
            event["http.response.status_code"] = error.status_code
        mine.span.add_event("llmclient.retry", event)

    def endpoint_paused(self, request: RequestInfo, seconds: float) -> None:
        """Seconds of pause the server asked for."""
        self._paused.add(seconds, self._mine(request).endpoint.attributes)

    def request_finished(self, request: RequestInfo) -> None:
        """Close the span; record the duration and token histograms."""
        mine = request.state.pop(self, None)
        if not isinstance(mine, _Request):
            return
        span, attributes = mine.span, dict(mine.attributes)
        if request.response_model:
            attributes["gen_ai.response.model"] = request.response_model
        if request.error is not None:
            attributes["error.type"] = error_type(request.error)
        span.set_attributes(attributes)
        span.set_attribute("llmclient.attempts", request.attempts)
        if request.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [request.finish_reason])
        self._record_usage(request, span, attributes)
        if self.capture_content and request.output is not None:
            span.set_attribute("gen_ai.output.messages", _output_message(request))
        if request.error is not None:
            message = getattr(request.error, "message", None) or type(request.error).__name__
            span.set_status(Status(StatusCode.ERROR, str(message)))
        self._duration.record(request.duration, attributes)
        span.end()
        if mine.token is not None:
            context.detach(mine.token)

    # ------------------------------------------------------------------ helpers
    def _record_usage(self, request: RequestInfo, span: Any, attributes: Attributes) -> None:
        usage = request.usage
        if usage is None:
            return
        counts = [("input", usage.prompt_tokens)]
        if request.operation != "embeddings":
            counts.append(("output", usage.completion_tokens))
        for kind, count in counts:
            span.set_attribute(f"gen_ai.usage.{kind}_tokens", count)
            self._tokens.record(count, {**attributes, "gen_ai.token.type": kind})

    def _mine(self, request: RequestInfo) -> _Request:
        mine = request.state.get(self)
        if not isinstance(mine, _Request):  # its request_started failed
            self.request_started(request)
            mine = request.state[self]
        assert isinstance(mine, _Request)
        return mine


def _input_messages(messages: Any) -> str:
    """`gen_ai.input.messages`: the chat messages as the conventions' JSON parts."""
    return json.dumps(
        [
            {"role": m.get("role"), "parts": [{"type": "text", "content": m.get("content")}]}
            for m in messages
            if isinstance(m, Mapping)
        ]
    )


def _output_message(request: RequestInfo) -> str:
    message: dict[str, Any] = {
        "role": "assistant",
        "parts": [{"type": "text", "content": request.output}],
    }
    if request.finish_reason:
        message["finish_reason"] = request.finish_reason
    return json.dumps([message])
