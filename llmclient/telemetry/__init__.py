"""Telemetry: a callback interface for each request's life, and OpenTelemetry on top of it.

Subclass `Observer` and register it for every client (`add_observer`) or for one
(`OllamaClient(..., observer=...)`). `enable_opentelemetry()` registers the observer that
emits GenAI spans and metrics and llmclient's limiter metrics; it also turns on by itself for
clients made after the application has set an OpenTelemetry tracer or meter provider.
OpenTelemetry is imported only then: `import llmclient` never imports it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from llmclient.telemetry._events import (
    AttemptInfo,
    Observer,
    RequestInfo,
    add_observer,
    observers,
    remove_observer,
)

if TYPE_CHECKING:
    from llmclient.telemetry._otel import OpenTelemetryObserver
    from llmclient.telemetry._prometheus import PrometheusServer

__all__ = [
    "AttemptInfo",
    "Observer",
    "RequestInfo",
    "add_observer",
    "detect_opentelemetry",
    "enable_opentelemetry",
    "observers",
    "remove_observer",
    "serve_prometheus",
]


class _Detection:
    """Whether clients still look for an application-configured OpenTelemetry provider."""

    pending = True


def enable_opentelemetry(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    *,
    capture_content: bool = False,
    register: bool = True,
) -> OpenTelemetryObserver:
    """The observer that emits OpenTelemetry spans and metrics, registered for every client.

    Providers default to OpenTelemetry's global ones. `capture_content=True` adds the prompt
    and answer text to spans (off by default). With `register=False` nothing is registered:
    pass the observer to one client (`observer=`). Needs `opentelemetry-api`
    (`pip install 'llmclient[otel]'`); `ImportError` says so when it is missing.
    """
    from llmclient.telemetry._otel import OpenTelemetryObserver

    observer = OpenTelemetryObserver(
        tracer_provider, meter_provider, capture_content=capture_content
    )
    if register:
        _Detection.pending = False
        add_observer(observer)
    return observer


def detect_opentelemetry() -> OpenTelemetryObserver | None:
    """Enable OpenTelemetry once, if the application has set a global provider.

    Clients call this when they are made; it imports nothing: an application that set a
    provider has imported OpenTelemetry already. Returns the observer it registered, if any.
    """
    if not _Detection.pending:
        return None
    trace = sys.modules.get("opentelemetry.trace")
    metrics = sys.modules.get("opentelemetry.metrics")
    if trace is None and metrics is None:
        return None
    configured = (trace is not None and _is_set(trace.get_tracer_provider())) or (
        metrics is not None and _is_set(metrics.get_meter_provider())
    )
    if not configured:
        return None
    return enable_opentelemetry()


def _is_set(provider: object) -> bool:
    """Whether a global provider is a real one, not OpenTelemetry's proxy or no-op default."""
    name = type(provider).__name__
    return name not in {
        "ProxyTracerProvider",
        "NoOpTracerProvider",
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    }


def serve_prometheus(port: int, host: str = "127.0.0.1") -> PrometheusServer:
    """Serve llmclient's metrics at `http://host:port/metrics` until `.close()` (or `with`).

    Its `observer` is an `OpenTelemetryObserver` (metrics only) to register or pass to a
    client. Needs `opentelemetry-sdk` and `opentelemetry-exporter-prometheus`
    (`pip install 'llmclient[prometheus]'`).
    """
    from llmclient.telemetry._prometheus import PrometheusServer

    return PrometheusServer(port, host)
