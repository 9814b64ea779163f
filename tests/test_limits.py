"""Concurrency limiter, adaptive limit, token bucket and Retry-After parsing."""

from __future__ import annotations

import asyncio
import email.utils
import statistics
import time
from collections.abc import Awaitable, Callable

import pytest

from llmclient import OllamaClient, run_concurrent
from llmclient.limits import (
    ConcurrencyLimiter,
    Endpoint,
    FixedLimit,
    LatencyLimit,
    Outcome,
    TokenBucket,
)
from llmclient.retry import parse_retry_after
from llmclient.testing import SimulatedServer


async def test_limiter_bounds_and_fifo() -> None:
    limiter = ConcurrencyLimiter(2)
    order: list[int] = []
    peak = 0

    async def work(i: int) -> None:
        nonlocal peak
        await limiter.acquire()
        try:
            order.append(i)
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0.001)
        finally:
            limiter.release()

    await asyncio.gather(*(work(i) for i in range(20)))
    assert peak == 2
    assert order == list(range(20))
    assert limiter.in_flight == 0
    assert limiter.waiting == 0


async def test_cancelled_waiter_takes_no_slot() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release()
    assert limiter.in_flight == 0
    assert limiter.waiting == 0


async def test_cancelled_right_after_handover_gives_slot_back() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_flight == 0


async def test_limit_changes_apply_to_waiters() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    limiter.limit = 3
    await asyncio.sleep(0)
    assert limiter.in_flight == 3
    limiter.limit = 1
    for _ in range(3):
        limiter.release()
    await asyncio.sleep(0)
    assert limiter.in_flight == 1  # shrinking admitted only one more
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


def test_latency_limit_grows_while_latency_is_flat() -> None:
    algorithm = LatencyLimit(initial=2, max_limit=8)
    for _ in range(200):
        algorithm.on_sample(0.05, algorithm.limit, Outcome.SUCCESS)
    assert algorithm.limit == 8


def slot_server(slots: int, service: float, algorithm: LatencyLimit, samples: int) -> list[int]:
    """Feed `algorithm` a model server of `slots` slots and a queue; return the limit after
    each sample. Past the slots each extra request waits `service / slots`, less the client's
    turnaround between requests (a quarter of that) which the queue hides from the slots."""
    limits = []
    for _ in range(samples):
        in_flight = algorithm.limit
        rtt = max(service, service * (in_flight - 0.25) / slots)
        limits.append(algorithm.on_sample(rtt, in_flight, Outcome.SUCCESS))
    return limits


@pytest.mark.parametrize("slots", [1, 2, 4, 8])
def test_latency_limit_settles_at_server_slots(slots: int) -> None:
    """It settled at twice the slots before: an extra queued request still bought throughput
    (the turnaround it hides), so it looked worth its latency."""
    limits = slot_server(slots, 0.05, LatencyLimit(initial=1, max_limit=64), 200 * slots + 400)
    settled = limits[len(limits) // 2 :]
    assert min(settled) >= slots
    assert max(settled) <= slots + 1
    assert sum(limit == slots for limit in settled) / len(settled) > 0.8


def test_latency_limit_returns_to_the_slots_after_drops() -> None:
    algorithm = LatencyLimit(initial=1, max_limit=64)
    slot_server(4, 0.05, algorithm, 600)
    for _ in range(3):
        algorithm.on_sample(0.05, algorithm.limit, Outcome.DROPPED)
    assert algorithm.limit < 4
    settled = slot_server(4, 0.05, algorithm, 1200)[800:]
    assert min(settled) >= 4 and max(settled) <= 5


def test_latency_limit_backs_off_on_drops_and_idle_does_not_grow() -> None:
    algorithm = LatencyLimit(initial=8, max_limit=16)
    algorithm.on_sample(0.05, 8, Outcome.DROPPED)
    assert algorithm.limit == 6
    for _ in range(100):
        algorithm.on_sample(0.05, 1, Outcome.SUCCESS)  # demand never fills the limit
    assert algorithm.limit == 6


async def test_token_bucket_refund_and_charge() -> None:
    bucket = TokenBucket(1000, 60)
    await bucket.acquire(bucket.clamp(5000))  # oversized request: clamped, not deadlocked
    assert not bucket.has_capacity(1)
    bucket.adjust(-900)  # the request used far less than estimated
    assert bucket.has_capacity(800)
    bucket.adjust(+800)
    assert not bucket.has_capacity(200)


async def test_endpoint_pause_holds_dispatch() -> None:
    endpoint = Endpoint.local("test", FixedLimit(4))
    endpoint.pause(0.2)
    started = time.monotonic()
    lease, _ = await endpoint.acquire(1)
    assert time.monotonic() - started >= 0.19
    endpoint.release(lease, 0.0, Outcome.SUCCESS)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (parse_retry_after({"retry-after": future}) or 0) <= 30
    assert parse_retry_after({"retry-after": "garbage"}) is None
    assert parse_retry_after({"retry-after": "-4"}) == 0.0


def test_latency_limit_relearns_a_slower_server() -> None:
    algorithm = LatencyLimit(initial=4, max_limit=16)
    for _ in range(100):
        algorithm.on_sample(0.05 * max(1.0, algorithm.limit / 4), algorithm.limit, Outcome.SUCCESS)
    fast_limit = algorithm.limit
    for _ in range(400):  # the server is now 3x slower at any load
        algorithm.on_sample(0.15 * max(1.0, algorithm.limit / 4), algorithm.limit, Outcome.SUCCESS)
    assert fast_limit >= 4
    assert algorithm.limit >= 4  # it did not stay pinned at the minimum


def test_latency_limit_rests_at_a_single_slot() -> None:
    """A one-slot server: every extra request in flight adds a full service time."""
    algorithm = LatencyLimit(initial=1, max_limit=16)
    at_one = 0
    for _ in range(2000):
        limit = algorithm.limit
        algorithm.on_sample(0.05 * limit, limit, Outcome.SUCCESS)
        at_one += algorithm.limit == 1
    assert at_one / 2000 > 0.85  # trials above one slot become rare


async def test_a_waiter_cancelled_just_before_a_slot_frees_leaves_cleanly() -> None:
    """The release drops the cancelled waiter from the queue before its task runs: the task
    must still end with CancelledError, holding nothing."""
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)  # now waiting
    waiter.cancel()
    limiter.release()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (limiter.in_flight, limiter.waiting) == (0, 0)
    await limiter.acquire()
    assert limiter.in_flight == 1


async def test_auto_at_eight_slots_holds_when_the_server_slows_at_every_load(
    simulated_server_factory: Callable[..., Awaitable[SimulatedServer]],
) -> None:
    """Over real HTTP. Against the no-load latency measured before, a 1.4x slower server
    read as 2.3 queued requests at 8 and the limit removed one per round down to 5, with
    only latency to go by; now it tries one fewer, finds it no faster and stays."""
    server = await simulated_server_factory(parallel=8, latency=0.05)
    limits: list[int] = []
    algorithm = LatencyLimit(initial=8, max_limit=16)
    async with OllamaClient("sim-model", host=server.url, max_concurrent=algorithm) as client:
        await run_concurrent(client.generate_answer, [f"q{i}" for i in range(300)])
        server.latency = 0.07

        async def watch() -> None:
            while True:
                limits.append(algorithm.limit)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        await run_concurrent(client.generate_answer, [f"r{i}" for i in range(600)])
        watcher.cancel()
    assert statistics.median_low(limits[len(limits) // 2 :]) >= 7, limits


def test_probe_queue_is_the_deprecated_name_of_trial_queue() -> None:
    with pytest.warns(DeprecationWarning, match="use trial_queue="):
        algorithm = LatencyLimit(probe_queue=0.8)
    assert algorithm.trial_queue == 0.8 and algorithm.probe_queue == 0.8
    assert LatencyLimit(trial_queue=0.8).trial_queue == 0.8
    with pytest.raises(ValueError, match="trial_queue"):
        LatencyLimit(trial_queue=2.0, max_queue=1.5)
