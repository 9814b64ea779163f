"""Budgets kept in Redis: one count for every process that uses the budget's name, against a
real redis-server (skipped without one unless LLMCLIENT_REQUIRE_REDIS=1)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from llmclient import (
    Budget,
    BudgetExceededError,
    BudgetTracker,
    LimitsUnavailableError,
    OllamaClient,
    OpenAIClient,
    RedisBackend,
    run_concurrent,
)
from llmclient.testing.redis import RedisServer
from tests.conftest import server_in_thread

WORKER = Path(__file__).with_name("budget_worker.py")
ESTIMATE = 20 // 4 + 1 + 10  # "question number NN" and max_tokens=10


def spent_in_redis(url: str, name: str) -> dict[str, float]:
    with redis.Redis.from_url(url) as r:
        raw = r.hgetall(f"llmclient:budget:{{{name}}}:spent")
    return {k.decode(): float(v) for k, v in raw.items()}


def test_two_processes_share_one_budget_and_never_pass_it_by_more_than_in_flight(
    redis_server: RedisServer,
) -> None:
    # one process speaks Ollama's API, the other OpenAI's: one budget name, one count
    providers = ["ollama", "openai"]
    cap, items = 200, 40  # either process alone would spend about 360
    with server_in_thread(parallel=4, latency=0.02) as server:
        bases = {"ollama": server.url, "openai": server.openai_base_url}
        workers = [
            subprocess.Popen(
                [sys.executable, str(WORKER), redis_server.url, bases[p], p, str(cap), str(items)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for p in providers
        ]
        reports = []
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0
            reports.append(json.loads(out))
        completed = server.stats.completed
    spent = spent_in_redis(redis_server.url, "shared")
    total = spent["prompt"] + spent["completion"]
    assert total == sum(r["tokens"] for r in reports)  # every answer settled from its usage
    in_flight = 2 * 4 * ESTIMATE  # at most a pool's worth per process on the wire
    assert total <= cap + in_flight
    assert total <= cap  # the estimates here are never below the usage: not even that
    assert spent["rprompt"] == pytest.approx(0) and spent["rcompletion"] == pytest.approx(0)
    for report in reports:
        assert report["answered"] + report["refused"] == items
        assert report["refused"] > 0
    assert sum(r["answered"] for r in reports) == completed > 0
    assert total > cap - in_flight  # and it was spent, not given up early


async def test_two_clients_on_separate_backends_count_once(
    redis_server: RedisServer, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.01)
    budget = Budget(total_tokens=300, name="pair")
    one = OllamaClient(
        "sim-model", host=server.url, limits=RedisBackend(redis_server.url), budget=budget
    )
    two = OpenAIClient(
        "sim-model",
        base_url=server.openai_base_url,
        limits=RedisBackend(redis_server.url, prefix="llmclient"),
        budget=budget,
    )
    async with one, two:
        outcomes = await asyncio.gather(
            run_concurrent(
                lambda p: one.generate_answer(p, max_tokens=10),
                [f"a {i}" for i in range(30)],
                return_exceptions=True,
            ),
            run_concurrent(
                lambda p: two.generate_answer(p, max_tokens=10),
                [f"b {i}" for i in range(30)],
                return_exceptions=True,
            ),
        )
        seen = await one.budget.spent()  # type: ignore[union-attr]
        used = sum(c.stats.prompt_tokens + c.stats.completion_tokens for c in (one, two))
    assert seen.total_tokens == used <= 300
    refused = [o for run in outcomes for o in run if isinstance(o, BudgetExceededError)]
    assert refused and all(o.budget.name == "pair" for o in refused)


_HOLD = """
import asyncio, sys
from llmclient import Budget, BudgetTracker
from llmclient.limits.backends._redis_budget import RedisBudgetStore

async def main():
    tracker = BudgetTracker(Budget(total_tokens=100, name="lease"), sys.argv[1])
    tracker._store = RedisBudgetStore(sys.argv[1], "llmclient", "lease", lease=0.6)
    await tracker.reserve(10, 80)
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_hold(url: str) -> subprocess.Popen[str]:
    """A process holding a reservation of 90 tokens (lease 0.6 s) until killed."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, url], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(10)


async def test_a_live_reservation_is_renewed_and_a_killed_ones_lapses(
    redis_server: RedisServer,
) -> None:
    holder = start_hold(redis_server.url)
    try:
        alive = BudgetTracker(Budget(total_tokens=100, name="lease"), redis_server.url)
        await asyncio.sleep(1.5)  # more than two leases: the holder's heartbeat renews it
        assert (await alive.spent()).reserved_tokens == 90
        stop(holder)
        started = time.monotonic()
        held = await alive.reserve(10, 80)  # waits until the dead holder's lease lapses
        assert time.monotonic() - started < 5
        await held.settle(None, charge_estimate=True)
        assert (await alive.spent()).total_tokens == 90
        await alive.aclose()
    finally:
        stop(holder)


async def test_redis_down_fails_the_request_naming_redis(simulated_server_factory: Any) -> None:
    server = await simulated_server_factory(latency=0.0)
    down = RedisServer()  # a free port, never started
    async with OllamaClient(
        "sim-model",
        host=server.url,
        limits=RedisBackend(down.url, on_error="fail"),
        budget=Budget(total_tokens=100),
        share_limits=False,
    ) as client:
        with pytest.raises(LimitsUnavailableError, match=r"budget unavailable: .*127\.0\.0\.1"):
            await client.generate_answer("hi")
    assert server.stats.completed == 0


async def test_redis_down_waits_under_on_error_wait_and_counts_once_back(
    simulated_server_factory: Any,
) -> None:
    """A budget in Redis honours `on_error="wait"` as shared limits do: the request waits
    for Redis (down at the start, up 0.5 s later), then is sent and counted there."""
    server = await simulated_server_factory(latency=0.0)
    redis_server = RedisServer()  # its port, not started yet
    backend = RedisBackend(redis_server.url, on_error="wait", wait_timeout=30)
    try:
        async with OllamaClient(
            "sim-model",
            host=server.url,
            limits=backend,
            budget=Budget(total_tokens=100, name="waits"),
            share_limits=False,
        ) as client:
            call = asyncio.create_task(client.generate_answer("hi", max_tokens=10))
            await asyncio.sleep(0.5)
            assert not call.done() and server.stats.completed == 0
            await asyncio.to_thread(redis_server.start)
            assert await asyncio.wait_for(call, 20) == "Simulated reply to: hi"
        assert server.stats.completed == 1
        assert spent_in_redis(redis_server.url, "waits")["completion"] > 0
    finally:
        redis_server.stop()


async def test_redis_down_past_wait_timeout_fails_naming_it(simulated_server_factory: Any) -> None:
    server = await simulated_server_factory(latency=0.0)
    down = RedisServer()  # a free port, never started
    async with OllamaClient(
        "sim-model",
        host=server.url,
        limits=RedisBackend(down.url, on_error="wait", wait_timeout=0.3),
        budget=Budget(total_tokens=100),
        share_limits=False,
    ) as client:
        started = time.monotonic()
        with pytest.raises(LimitsUnavailableError, match=r"127\.0\.0\.1.*wait_timeout=0\.3s"):
            await client.generate_answer("hi")
        assert time.monotonic() - started >= 0.3
    assert server.stats.completed == 0
