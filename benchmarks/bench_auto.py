"""`max_concurrent="auto"` and `llmclient probe` against servers of 1, 2, 4 and 8 slots.

Each simulated server (a fixed service time, an unbounded queue) runs in its own process.
For each, the same requests go through `OllamaClient(max_concurrent=slots)` (the right fixed
limit) and `OllamaClient(max_concurrent="auto")` (starting at 1); then `probe()` runs with
its default levels. Prints one row per server: where "auto" settled (the median limit over
the second half of its requests) and its peak, the share of its requests sent at most
slots + 1 in flight, p50 latency on the wire and throughput of both, and probe's
recommendation.

Goals: "auto" settles within slots + 1, its p50 within 1.2x and its throughput within 5% of
the fixed limit's; probe recommends the slots.

    python benchmarks/bench_auto.py [--requests-per-slot 300] [--latency 0.05]
        [--slots 1,2,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

from _server import server_process

from llmclient import OllamaClient, run_concurrent
from llmclient.probing import probe
from llmclient.profiles import MaxConcurrentSpec
from llmclient.telemetry import AttemptInfo, Observer, RequestInfo


class LimitTrace(Observer):
    """The endpoint's limit after each finished attempt."""

    def __init__(self) -> None:
        self.limits: list[int] = []

    def attempt_finished(self, request: RequestInfo, attempt: AttemptInfo) -> None:
        self.limits.append(attempt.concurrency_limit)


@dataclass(frozen=True)
class Run:
    """One client's pass over the requests."""

    wall_s: float
    p50_s: float
    limits: list[int]

    def throughput(self, requests: int) -> float:
        return requests / self.wall_s


async def one_run(url: str, spec: MaxConcurrentSpec, requests: int) -> Run:
    trace = LimitTrace()
    async with OllamaClient("sim-model", host=url, max_concurrent=spec, observer=trace) as client:
        prompts = [f"q{i}" for i in range(requests)]
        started = time.monotonic()
        await run_concurrent(client.generate_answer, prompts, progress_bar=False)
        wall = time.monotonic() - started
        p50 = client.stats.latency_p50
    assert p50 is not None
    return Run(wall, p50, trace.limits)


async def probed(url: str) -> int | None:
    report = await probe("ollama", "sim-model", base_url=url)
    return report.recommended_max_concurrent


def row(slots: int, fixed: Run, auto: Run, recommended: int | None, requests: int) -> str:
    second_half = auto.limits[len(auto.limits) // 2 :]
    settled = statistics.median_low(second_half)
    near = sum(limit <= slots + 1 for limit in auto.limits) / len(auto.limits)
    cells = (
        f"{slots:>5}",
        f"{settled:>7}",
        f"{max(auto.limits):>4}",
        f"{near:>9.0%}",
        f"{fixed.p50_s * 1e3:>10.1f}",
        f"{auto.p50_s * 1e3:>9.1f}",
        f"{auto.p50_s / fixed.p50_s:>5.2f}x",
        f"{fixed.throughput(requests):>10.1f}",
        f"{auto.throughput(requests):>9.1f}",
        f"{auto.throughput(requests) / fixed.throughput(requests):>6.0%}",
        f"{recommended!s:>6}",
    )
    return "  ".join(cells)


HEADER = (
    "slots  settled  peak  <=slots+1  fixed p50  auto p50  ratio  fixed rps  auto rps   auto  probe"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests-per-slot", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--slots", default="1,2,4,8")
    args = parser.parse_args()
    print(f'max_concurrent="auto" vs the fixed limit; service time {args.latency * 1e3:.0f} ms,')
    print(f"{args.requests_per_slot} requests per slot; p50 is time on the wire")
    print(HEADER)
    for slots in (int(part) for part in args.slots.split(",")):
        requests = args.requests_per_slot * slots
        with server_process(parallel=slots, latency=args.latency) as url:
            fixed = asyncio.run(one_run(url, slots, requests))
            auto = asyncio.run(one_run(url, "auto", requests))
            recommended = asyncio.run(probed(url))
        print(row(slots, fixed, auto, recommended, requests), flush=True)


if __name__ == "__main__":
    main()
