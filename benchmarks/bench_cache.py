"""The response cache: hits per second, and a rerun of a job that sends no request.

Prints, for a SQLite file holding `--items` answers:

- the store's lookup path (`SQLiteCache.get`): one lookup at a time, and `--concurrency` at
  once (the lookups of one turn of the event loop reach the reader thread together and are
  answered by one query), next to the same awaits on a dict (what asyncio itself costs);
- the whole hit path of `client.generate` (request built and validated, key made, lookup,
  completion decoded), with the SQLite store and with a store in memory (the cost without
  SQLite);
- a job of `--items` prompts run twice against the simulated server with `run_concurrent`:
  the first run's requests, and the second's (0: every answer comes from the cache).

    python benchmarks/bench_cache.py [--items 10000] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable

from llmclient import OpenAIClient, SQLiteCache, run_concurrent
from llmclient.testing import SimulatedServer


class MemoryStore:
    """A store in a dict: what the hit path costs without SQLite."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self.data[key] = value


async def rate(count: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> float:
    """Calls per second of `one(i)` for i < count, `concurrency` at a time (best of 3)."""
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for start in range(0, count, concurrency):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + concurrency))))
        best = max(best, count / (time.perf_counter() - started))
    return best


async def store_lookups(path: str, items: int, concurrency: int) -> None:
    store = SQLiteCache(path)
    value = b'{"text":"' + b"x" * 200 + b'"}'
    keys = [f"{i:064x}" for i in range(items)]
    for start in range(0, items, 1000):
        await asyncio.gather(*(store.set(k, value) for k in keys[start : start + 1000]))

    async def get(i: int) -> object:
        found = await store.get(keys[i])
        assert found is not None
        return found

    memory = MemoryStore()
    memory.data = dict.fromkeys(keys, value)

    async def floor(i: int) -> object:
        return await memory.get(keys[i])

    print(f"SQLiteCache.get, one at a time:      {await rate(items, 1, get):>9,.0f} hits/s")
    print(
        f"SQLiteCache.get, {concurrency} at once:       "
        f"{await rate(items, concurrency, get):>9,.0f} hits/s"
    )
    print(
        f"a dict's get, {concurrency} at once (asyncio's floor): "
        f"{await rate(items, concurrency, floor):>9,.0f} hits/s"
    )
    await store.aclose()


async def job(
    server: SimulatedServer, cache: object, prompts: list[str], temperature: float | None = None
) -> tuple[int, float, OpenAIClient]:
    """Run the job once with a new client; the requests it sent and its wall time."""
    before = server.stats.by_path["/v1/chat/completions"]
    started = time.perf_counter()
    async with OpenAIClient(
        "sim-model", base_url=server.openai_base_url, cache=cache, max_concurrent=64
    ) as client:
        await run_concurrent(
            lambda p: client.generate(p, max_tokens=8, temperature=temperature),
            prompts,
            progress_bar=False,
        )
    sent = server.stats.by_path["/v1/chat/completions"] - before
    return sent, time.perf_counter() - started, client


async def hit_path(server: SimulatedServer, cache: object, name: str, concurrency: int) -> None:
    prompts = [f"cached question {i}" for i in range(2000)]
    await job(server, cache, prompts, temperature=0)  # repeated calls in one run: deterministic
    async with OpenAIClient("sim-model", base_url=server.openai_base_url, cache=cache) as client:

        async def one(i: int) -> object:
            completion = await client.generate(prompts[i], max_tokens=8, temperature=0)
            assert completion.attempts == 0
            return completion

        solo = await rate(len(prompts), 1, one)
        many = await rate(len(prompts), concurrency, one)
    print(f"client.generate hit, {name:<7} one at a time: {solo:>9,.0f} hits/s")
    print(f"client.generate hit, {name:<7} {concurrency} at once:  {many:>9,.0f} hits/s")


async def main(items: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await store_lookups(os.path.join(tmp, "lookups.sqlite"), items, concurrency)
        async with SimulatedServer(parallel=64, latency=0.002) as server:
            await hit_path(server, os.path.join(tmp, "hits.sqlite"), "sqlite", concurrency)
            await hit_path(server, MemoryStore(), "memory", concurrency)
            path = os.path.join(tmp, "job.sqlite")
            prompts = [f"job item {i}" for i in range(items)]
            sent, wall, _ = await job(server, path, prompts)
            print(f"job of {items:,} items, first run:  {sent:>6,} requests, {wall:6.1f} s")
            sent, wall, client = await job(server, path, prompts)
            stats = client.stats
            print(
                f"job of {items:,} items, rerun:      {sent:>6,} requests, {wall:6.1f} s "
                f"({stats.cache_hits:,} hits, {stats.cache_misses:,} misses)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.concurrency))
