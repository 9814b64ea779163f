"""`PrometheusServer`: llmclient's metrics served at /metrics through OpenTelemetry's
Prometheus exporter, on a registry of its own where the exporter allows it (2026 releases;
older ones register on prometheus_client's global registry, which is then what is served)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

__all__ = ["PrometheusServer"]

_NEEDS = (
    "serving Prometheus metrics needs opentelemetry-sdk, opentelemetry-exporter-prometheus and "
    "prometheus_client: pip install 'llmclient[prometheus]'"
)


class PrometheusServer:
    """An HTTP server for `/metrics` and the meter provider behind it, until `close()`.

    `observer` (metrics only, no spans) is what to register or give to a client; `port` is
    the port listened on (the one chosen when asked for 0).
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port={port!r}: must be an integer from 0 to 65535")
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.trace import NoOpTracerProvider
            from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

            from llmclient.telemetry._otel import OpenTelemetryObserver
        except ImportError as missing:
            raise ImportError(f"{_NEEDS} ({missing})") from missing
        self.registry = CollectorRegistry(auto_describe=True)
        try:
            reader = PrometheusMetricReader(registry=self.registry)
        except TypeError:  # an exporter without `registry=`
            self.registry = REGISTRY
            reader = PrometheusMetricReader()
        self.meter_provider: Any = MeterProvider(metric_readers=[reader])
        self.observer = OpenTelemetryObserver(NoOpTracerProvider(), self.meter_provider)
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except BaseException:
            self.meter_provider.shutdown()
            raise
        self.host = host
        self.port: int = self._server.server_address[1]

    @property
    def url(self) -> str:
        """Where the metrics are: `http://host:port/metrics`."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and shut the meter provider down."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self.meter_provider.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
