"""Client overhead: `OllamaClient()` against the raw `ollama` SDK behind `asyncio.Semaphore(4)`.

The simulated Ollama server (4 slots, a queue of 16, 50 ms a request) runs in its own process,
so the figures are the client's. Prints wall time, failures, and the per-request overhead in
microseconds, both in wall time and in the client process's CPU time.

    python benchmarks/bench_client_overhead.py [--requests 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import ollama
from _server import server_process

from llmclient import OllamaClient

SLOTS, QUEUE, LATENCY = 4, 16, 0.05


async def raw_sdk(host: str, n: int) -> int:
    client = ollama.AsyncClient(host=host)
    semaphore = asyncio.Semaphore(SLOTS)
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with semaphore:
            try:
                await client.chat("sim-model", [{"role": "user", "content": f"q{i}"}])
            except ollama.ResponseError:
                failures += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    await client._client.aclose()
    return failures


async def llmclient_default(host: str, n: int) -> int:
    async with OllamaClient("sim-model", host=host) as client:
        results = await asyncio.gather(
            *(client.generate_answer(f"q{i}") for i in range(n)), return_exceptions=True
        )
    return sum(isinstance(r, BaseException) for r in results)


async def unbounded(host: str, n: int) -> int:
    client = ollama.AsyncClient(host=host)
    results = await asyncio.gather(
        *(client.chat("sim-model", [{"role": "user", "content": f"q{i}"}]) for i in range(n)),
        return_exceptions=True,
    )
    await client._client.aclose()
    return sum(isinstance(r, BaseException) for r in results)


def measure(
    run: Callable[[str, int], Awaitable[int]], host: str, n: int
) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    failures = asyncio.run(run(host, n))  # type: ignore[arg-type]
    return time.perf_counter() - wall, time.process_time() - cpu, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.requests

    with server_process(parallel=SLOTS, max_queue=QUEUE, latency=LATENCY) as host:
        run_all(host, n, args.rounds)


def run_all(host: str, n: int, rounds: int) -> None:
    ideal = n / SLOTS * LATENCY
    print(
        f"simulated Ollama: {SLOTS} slots, queue {QUEUE}, {LATENCY * 1000:.0f} ms/request;"
        f" {n} requests; ideal {ideal:.2f} s"
    )

    variants = {"raw SDK + Semaphore(4)": raw_sdk, "OllamaClient()": llmclient_default}
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():  # interleaved, so drift hits both alike
            samples[name].append(measure(run, host, n))
    wall_u, cpu_u, fail_u = measure(unbounded, host, n)

    print(f"{'variant':<26}{'wall s (best/median)':>22}{'cpu s':>8}{'failed':>8}")
    best: dict[str, tuple[float, float]] = {}
    for name, rows in samples.items():
        walls = sorted(r[0] for r in rows)
        cpus = sorted(r[1] for r in rows)
        failed = max(r[2] for r in rows)
        best[name] = (statistics.median(walls), statistics.median(cpus))
        print(
            f"{name:<26}{walls[0]:>10.3f} /{statistics.median(walls):>8.3f}"
            f"{statistics.median(cpus):>10.3f}{failed:>8}"
        )
    print(f"{'unbounded gather (raw)':<26}{wall_u:>10.3f} /{'':>8}{cpu_u:>10.3f}{fail_u:>8}")

    (raw_wall, raw_cpu), (ours_wall, ours_cpu) = best.values()
    print(f"time vs raw SDK: {100 * (ours_wall / raw_wall - 1):+.2f}%  (target: within 5%)")
    print(
        f"overhead per request: {1e6 * (ours_wall - raw_wall) / n:+.0f} us wall, "
        f"{1e6 * (ours_cpu - raw_cpu) / n:+.0f} us CPU"
    )


if __name__ == "__main__":
    main()
