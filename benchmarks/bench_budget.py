"""Budget cost per request: a tracker's reserve + settle, in this process and in Redis.

Prints microseconds per request for a local tracker (one and 64 concurrent requests) and,
when `redis-server` is installed, for a tracker kept in Redis (one Lua call to reserve, one
to settle: two round trips on loopback).

    python benchmarks/bench_budget.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time

from llmclient import Budget, BudgetTracker
from llmclient.limits.spending import hold
from llmclient.types import Usage

USAGE = Usage(prompt_tokens=5, completion_tokens=8)


async def per_request(tracker: BudgetTracker, requests: int, concurrent: int) -> float:
    """Microseconds of budget work per request: `concurrent` tasks reserving and settling in
    turn (the count is shared, so with Redis the round trips overlap)."""

    async def worker(count: int) -> None:
        for _ in range(count):
            for reservation in await hold((tracker,), 6, 10):
                await reservation.settle(USAGE, charge_estimate=True)

    started = time.perf_counter()
    await asyncio.gather(*(worker(requests // concurrent) for _ in range(concurrent)))
    return (time.perf_counter() - started) / (requests // concurrent * concurrent) * 1e6


async def main(requests: int) -> None:
    budget = Budget(total_tokens=10**12)
    for concurrent in (1, 64):
        us = await per_request(BudgetTracker(budget), requests, concurrent)
        print(f"local tracker, {concurrent:>2} at a time: {us:6.1f} us per request")
    if shutil.which("redis-server") is None:
        print("redis-server not installed: Redis figures skipped")
        return
    from llmclient.testing.redis import RedisServer

    with RedisServer() as server:
        for concurrent in (1, 64):
            tracker = BudgetTracker(budget, server.url)
            us = await per_request(tracker, requests // 10, concurrent)
            await tracker.aclose()
            print(f"Redis tracker, {concurrent:>2} at a time: {us:6.1f} us per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    asyncio.run(main(parser.parse_args().requests))
