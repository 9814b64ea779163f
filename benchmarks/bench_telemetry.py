"""CPU per request of llmclient's own path with telemetry off, with a do-nothing observer, and
with OpenTelemetry on (the SDK's providers, nothing exported), with a provider that answers at
once (no network, as in bench_pipeline.py).

Also prints what "off" costs by itself: the check each request makes for observers, as a share
of the client's own CPU per request (the goal is under 5%).

    python benchmarks/bench_telemetry.py [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from collections.abc import Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from llmclient import OllamaClient
from llmclient.telemetry import Observer, enable_opentelemetry
from llmclient.types import Completion, Usage


class InstantOllama(OllamaClient):
    """Answers every chat request at once, without the network."""

    async def _chat(self, request: object) -> Completion:  # type: ignore[override]
        return Completion(text="ok", usage=Usage(1, 1), model="m", finish_reason="stop")


def otel_observer(capture_content: bool = False) -> Observer:
    """OpenTelemetry with the SDK's providers: spans are made and ended, metrics aggregated."""
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return enable_opentelemetry(
        TracerProvider(), meter_provider, capture_content=capture_content, register=False
    )


MODES: dict[str, Callable[[], Observer | None]] = {
    "off": lambda: None,
    "no-op Observer": Observer,
    "OpenTelemetry": otel_observer,
    "OpenTelemetry + content": lambda: otel_observer(capture_content=True),
}


async def cpu_per_call(calls: int, observer: Observer | None) -> float:
    async with InstantOllama("m", host="127.0.0.1:9", observer=observer) as client:
        await client.generate("warm up")
        started = time.process_time()
        for _ in range(calls):
            await client.generate("hello")
        return (time.process_time() - started) / calls


def off_check_cost() -> float:
    """Seconds per request of the observer check when nobody observes."""
    pipeline = InstantOllama("m", host="127.0.0.1:9")._pipeline
    trace = pipeline._trace
    number = 1_000_000
    return timeit.timeit(lambda: trace("chat", "m", None, False), number=number) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.calls} calls x {args.rounds} rounds, provider answers at once")
    best: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved, so a busy moment hits every mode alike
        for mode, make in MODES.items():
            cost = asyncio.run(cpu_per_call(args.calls, make()))
            best[mode] = min(best.get(mode, cost), cost)
    base = best["off"]
    for mode, cost in best.items():
        extra = (
            "" if mode == "off" else f"  (+{(cost - base) * 1e6:.1f} us, +{cost / base - 1:.0%})"
        )
        print(f"{mode:<24} {cost * 1e6:7.1f} us CPU per generate(){extra}")
    check = off_check_cost()
    print(
        f"telemetry off: the observer check costs {check * 1e9:.0f} ns per request, "
        f"{check / base:.2%} of the client's own {base * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
