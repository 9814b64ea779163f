"""Throughput of an endpoint pool over three servers with 1, 2 and 4 slots.

Each simulated server runs in its own process. The pool (`OllamaClient(host=EndpointPool(...))`)
is compared with the sum of the servers' capacities (slots / latency), with one server of
7 slots under one client (the same capacity, no dispatch: what the client's own turnaround
leaves of it) and with round-robin dispatch (request i to server i mod 3, each server under
its own client and limit), which is what spreading work without regard to capacity gives.
Last, "one busy": the 4-slot server beside one that answers every request with 503 (its
listings, hence the checks, answer): what a refusing member costs the pool.

    python benchmarks/bench_pool.py [--requests 420] [--latency 0.05] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from _server import server_process

from llmclient import EndpointPool, OllamaClient, run_concurrent

SLOTS = (1, 2, 4)


async def through_pool(pool: EndpointPool, requests: int, warm_up: bool) -> tuple[float, list[int]]:
    """Wall time of `requests` through one client of `pool`, and each server's answers."""
    async with OllamaClient("sim-model", host=pool) as client:
        if warm_up:
            await client.generate("warm up", max_tokens=1)
        started = time.monotonic()
        await run_concurrent(
            client.generate_answer, [f"q{i}" for i in range(requests)], progress_bar=False
        )
        wall = time.monotonic() - started
        shares = [stats.answered for stats in client.endpoint_stats.values()]
    return wall, shares


async def pooled(urls: list[str], requests: int) -> tuple[float, list[int]]:
    return await through_pool(EndpointPool(dict(zip(urls, SLOTS, strict=True))), requests, True)


async def round_robin(urls: list[str], requests: int) -> tuple[float, list[int]]:
    clients = [
        OllamaClient("sim-model", host=url, max_concurrent=slots)
        for url, slots in zip(urls, SLOTS, strict=True)
    ]
    for client in clients:
        await client.generate("warm up", max_tokens=1)

    async def ask(index: int) -> str:
        return await clients[index % len(clients)].generate_answer(f"q{index}")

    started = time.monotonic()
    await run_concurrent(ask, range(requests), max_concurrent=sum(SLOTS), progress_bar=False)
    wall = time.monotonic() - started
    shares = [client.stats.completed - 1 for client in clients]
    for client in clients:
        await client.aclose()
    return wall, shares


async def one_server(url: str, requests: int) -> tuple[float, list[int]]:
    async with OllamaClient("sim-model", host=url, max_concurrent=sum(SLOTS)) as client:
        await client.generate("warm up", max_tokens=1)
        started = time.monotonic()
        await run_concurrent(
            client.generate_answer, [f"q{i}" for i in range(requests)], progress_bar=False
        )
        return time.monotonic() - started, [requests]


async def one_busy(urls: list[str], requests: int) -> tuple[float, list[int]]:
    return await through_pool(EndpointPool({urls[0]: 4, urls[1]: 4}), requests, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=420)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    capacity = sum(SLOTS) / args.latency
    print(
        f"{args.requests} requests, servers with {SLOTS} slots, {args.latency * 1000:.0f} ms a "
        f"request: capacity {capacity:.0f} req/s; best of {args.rounds} rounds"
    )
    with contextlib.ExitStack() as stack:
        urls = [
            stack.enter_context(server_process(parallel=n, latency=args.latency)) for n in SLOTS
        ]
        single = stack.enter_context(server_process(parallel=sum(SLOTS), latency=args.latency))
        busy = stack.enter_context(
            server_process(parallel=4, latency=args.latency, fault_rates={"503": 1.0})
        )
        runs = (
            ("pool", lambda: pooled(urls, args.requests)),
            ("one server", lambda: one_server(single, args.requests)),
            ("round-robin", lambda: round_robin(urls, args.requests)),
            ("one busy", lambda: one_busy([busy, urls[2]], args.requests)),
        )
        for name, run in runs:
            wall, shares = min(asyncio.run(run()) for _ in range(args.rounds))
            rate = args.requests / wall
            if name == "one busy":  # only the 4-slot server serves
                capacity = SLOTS[2] / args.latency
            print(
                f"{name:12} wall {wall:6.2f}s  {rate:6.1f} req/s  {rate / capacity:6.1%} of "
                f"capacity  per server {shares}"
            )


if __name__ == "__main__":
    main()
