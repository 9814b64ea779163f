"""Shared limits in Redis against per-process ones: overhead, fleet throughput, crash recovery.

Starts its own redis-server (Debian package) on a free loopback port and the simulated server
in a child process. Prints:

1. Admission overhead: one admit + release cycle on an idle endpoint, local vs Redis
   (goal: Redis under 1 ms on loopback), and a whole request through a client.
2. Throughput of 4 processes sharing a 16-slot limit in Redis vs 1 process with 16 slots
   (goal: within 10%), with the server's peak in flight, over a few interleaved rounds; and,
   for reference, 4 processes with a fixed split of 4 slots each (what 4 processes cost
   without any sharing).
3. How long a SIGKILLed holder's slots take to come back, for a given lease.

    python benchmarks/bench_shared_limits.py [--cycles 2000] [--requests 800] [--lease 2]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

from _server import timed_server_process

from llmclient import OllamaClient, run_concurrent
from llmclient.limits import FixedLimit, shared_endpoint
from llmclient.limits.backends import LOCAL
from llmclient.limits.backends.redis import RedisBackend
from llmclient.testing.redis import RedisServer

KEY = ("http://127.0.0.1:9",)


def _holder_module() -> Any:
    """tests/redis_holder.py (the process that holds slots until killed), loaded by path."""
    path = Path(__file__).resolve().parents[1] / "tests" / "redis_holder.py"
    spec = importlib.util.spec_from_file_location("redis_holder", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def admit_cycles(limits: Any, cycles: int) -> float:
    """Mean µs of one admit + release on an idle endpoint."""
    endpoint = shared_endpoint(KEY, "bench", FixedLimit(4), None, None, limits)
    for _ in range(50):  # warm up connections and scripts
        lease, _ = await endpoint.acquire(0)
        endpoint.state.release_slot(lease)
    started = time.perf_counter()
    for _ in range(cycles):
        lease, _ = await endpoint.acquire(0)
        endpoint.state.release_slot(lease)
    return (time.perf_counter() - started) / cycles * 1e6


async def request_cost(url: str, limits: str, n: int) -> float:
    """Mean ms per sequential request through a client (server latency 0)."""
    async with OllamaClient("m", host=url, limits=limits) as client:
        for _ in range(20):
            await client.generate_answer("warm")
        started = time.perf_counter()
        for _ in range(n):
            await client.generate_answer("x")
        return (time.perf_counter() - started) / n * 1e3


def _fleet_worker(url: str, limits: str, slots: int, n: int, barrier: Any, out: Any) -> None:
    async def work() -> tuple[float, float]:
        async with OllamaClient("m", host=url, limits=limits, max_concurrent=slots) as client:
            await client.generate_answer("warm")
            barrier.wait(120)
            started = time.perf_counter()
            await run_concurrent(client.generate_answer, [f"q{i}" for i in range(n)])
            return started, time.perf_counter()

    out.put(asyncio.run(work()))


def fleet(url: str, limits: str, processes: int, slots: int, total: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    workers = [
        ctx.Process(
            target=_fleet_worker, args=(url, limits, slots, total // processes, barrier, out)
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    spans = [out.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    start = min(s for s, _ in spans)
    ends = [e - start for _, e in spans]
    return {"wall": max(ends), "first_done": min(ends), "rps": total / max(ends)}


async def _take_all(url: str, lease: float) -> float:
    backend = RedisBackend(url, lease=lease)
    endpoint = shared_endpoint(KEY, "x", FixedLimit(4), None, None, backend)
    for _ in range(4):
        await endpoint.acquire(0)
    return time.perf_counter()


def crash_recovery(url: str, lease: float) -> float:
    """Seconds from SIGKILL of a process holding all 4 slots until another holds them all."""
    holder = _holder_module().start_holder(url, lease, 4)
    time.sleep(lease)  # the heartbeat keeps them past one lease time
    killed = time.perf_counter()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    return asyncio.run(_take_all(url, lease)) - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the timed comparisons")
    args = parser.parse_args()

    with RedisServer() as redis_server:
        local = asyncio.run(admit_cycles(LOCAL, args.cycles))
        shared = asyncio.run(admit_cycles(RedisBackend(redis_server.url), args.cycles))
        print("1. admission overhead (idle endpoint, admit + release)")
        print(f"   local: {local:8.1f} µs   redis: {shared:8.1f} µs   (+{shared - local:.1f} µs)")
        with timed_server_process(parallel=16, latency=0.0) as server:
            runs = [
                (
                    asyncio.run(request_cost(server.url, "local", 300)),
                    asyncio.run(request_cost(server.url, redis_server.url, 300)),
                )
                for _ in range(args.rounds)
            ]
        local_ms = statistics.median(a for a, _ in runs)
        redis_ms = statistics.median(b for _, b in runs)
        extra = sorted((b - a) * 1e3 for a, b in runs)
        print(
            f"   one request through a client: local {local_ms:.3f} ms, redis {redis_ms:.3f} ms "
            f"(+{statistics.median(extra):.0f} µs; rounds {extra[0]:.0f} to {extra[-1]:.0f} µs)"
        )

        print(f"2. throughput, {args.requests} requests on a 16-slot server (latency 50 ms)")
        ideal = args.requests / 16 * 0.05
        rows = (
            ("1 process, 16 slots, local", 1, 16, "local"),
            ("4 processes sharing 16 slots in Redis", 4, 16, redis_server.url),
            ("4 processes, 4 slots each, local", 4, 4, "local"),
        )
        rates: dict[str, list[float]] = {label: [] for label, *_ in rows}
        for _ in range(args.rounds):  # interleaved: the machine's load drifts
            for label, processes, slots, limits in rows:
                with timed_server_process(parallel=16, latency=0.05) as server:
                    figures = fleet(server.url, limits, processes, slots, args.requests)
                    peak = server.report()["peak_in_flight"]
                rates[label].append(figures["rps"])
                print(
                    f"   {label:40s} {figures['rps']:7.1f} req/s  wall {figures['wall']:.2f} s "
                    f"({figures['wall'] / ideal:.2f}x ideal)  peak in flight {peak}  "
                    f"first process done at {figures['first_done'] / figures['wall']:.0%} of wall"
                )
        one, shared, split = (rates[label] for label, *_ in rows)
        ratios = sorted(b / a for a, b in zip(one, shared, strict=True))
        print(
            f"   Redis fleet / one process: median {statistics.median(ratios):.0%} "
            f"(rounds {ratios[0]:.0%} to {ratios[-1]:.0%}); a fixed split of the slots "
            f"(no sharing): {statistics.median(b / a for a, b in zip(one, split, strict=True)):.0%}"
        )

        print(f"3. slots of a SIGKILLed holder (lease {args.lease} s) came back after ", end="")
        print(f"{crash_recovery(redis_server.url, args.lease):.2f} s")


if __name__ == "__main__":
    main()
