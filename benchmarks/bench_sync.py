"""What the sync clients' loop thread costs: wall time per call and per streamed delta.

No network: a subclass of `OllamaClient` answers at once (a completion, or a stream of
`--deltas` deltas), so what is measured is llmclient's own path. The async client awaits its
calls one after another in `asyncio.run`; the sync client (`SyncClient` over the same stub)
makes the same calls from plain code, each one a hop to its loop thread and back. Rounds of the
two are interleaved, so a busy machine slows both alike. Prints microseconds per call and per
delta (median and best of the rounds) and the difference.

    python benchmarks/bench_sync.py [--calls 3000] [--deltas 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator

from llmclient import OllamaClient, SyncClient
from llmclient.clients.params import ChatRequest
from llmclient.types import Completion, StreamEnd, Usage

DELTAS = 200


class InstantOllama(OllamaClient):
    """Answers every chat request at once, without the network."""

    async def _chat(self, request: ChatRequest) -> Completion:
        return Completion(text="ok", usage=Usage(1, 1))

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str | StreamEnd]:
        for _ in range(DELTAS):
            yield "x"
        yield StreamEnd("stop", Usage(1, DELTAS))


def make() -> InstantOllama:
    return InstantOllama("m", host="127.0.0.1:9", max_concurrent=4)


async def async_round(calls: int) -> tuple[float, float]:
    async with make() as client:
        await client.generate("warm up")
        started = time.perf_counter()
        for _ in range(calls):
            await client.generate("hello")
        per_call = (time.perf_counter() - started) / calls
        started = time.perf_counter()
        async with client.stream("hello") as deltas:
            count = sum([1 async for _ in deltas])
        return per_call, (time.perf_counter() - started) / count


def sync_round(calls: int) -> tuple[float, float]:
    with SyncClient(make()) as client:
        client.generate("warm up")
        started = time.perf_counter()
        for _ in range(calls):
            client.generate("hello")
        per_call = (time.perf_counter() - started) / calls
        started = time.perf_counter()
        with client.stream("hello") as deltas:
            count = sum(1 for _ in deltas)
        return per_call, (time.perf_counter() - started) / count


def main() -> None:
    global DELTAS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--deltas", type=int, default=DELTAS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    DELTAS = args.deltas
    results: dict[str, list[tuple[float, float]]] = {"async": [], "sync": []}
    for _ in range(args.rounds):
        results["async"].append(asyncio.run(async_round(args.calls)))
        results["sync"].append(sync_round(args.calls))
    print(f"{args.calls} calls and one {args.deltas}-delta stream per round, {args.rounds} rounds")
    print(f"{'client':<8} {'µs/call p50':>12} {'best':>8} {'µs/delta p50':>13} {'best':>8}")
    medians = {}
    for name, rounds in results.items():
        calls = [c * 1e6 for c, _ in rounds]
        deltas = [d * 1e6 for _, d in rounds]
        medians[name] = (statistics.median(calls), statistics.median(deltas))
        print(
            f"{name:<8} {medians[name][0]:>12.1f} {min(calls):>8.1f} "
            f"{medians[name][1]:>13.1f} {min(deltas):>8.1f}"
        )
    extra_call = medians["sync"][0] - medians["async"][0]
    extra_delta = medians["sync"][1] - medians["async"][1]
    print(f"sync over async: +{extra_call:.1f} µs per call, +{extra_delta:.1f} µs per delta")


if __name__ == "__main__":
    main()
