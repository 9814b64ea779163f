"""One limit per server per process, whatever the threads and event loops.

Each thread runs its own `asyncio.run`; the server (8 slots) runs in a thread of its own and
counts what reaches it, so a limit that held per loop only would show up as more requests on
the wire than `max_concurrent`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmclient import BaseLLMClient, OllamaClient, OpenAIClient
from llmclient.limits.concurrency import ConcurrencyLimiter
from llmclient.testing import SimulatedServer
from tests.conftest import server_in_thread


@pytest.fixture
def wide_server() -> Iterator[SimulatedServer]:
    """A simulated server with more slots than any client here may use, in its own thread."""
    with server_in_thread(parallel=8, latency=0.03) as server:
        yield server


def make(provider: str, server: SimulatedServer, limit: int = 2) -> BaseLLMClient:
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, max_concurrent=limit)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, max_concurrent=limit)


def in_threads(jobs: list[Callable[[], list[str]]]) -> list[list[str]]:
    """Run each job in its own thread (each job runs its own event loop) and collect results."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        return [future.result(timeout=60) for future in [pool.submit(job) for job in jobs]]


def asking(client: BaseLLMClient, tag: str, count: int = 12) -> Callable[[], list[str]]:
    async def ask_all() -> list[str]:
        prompts = [f"{tag}-{i}" for i in range(count)]
        return list(await asyncio.gather(*(client.generate_answer(p) for p in prompts)))

    return lambda: asyncio.run(ask_all())


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_two_clients_in_two_threads_share_the_limit(
    provider: str, wide_server: SimulatedServer
) -> None:
    clients = [make(provider, wide_server), make(provider, wide_server)]
    results = in_threads([asking(c, f"t{n}") for n, c in enumerate(clients)])
    assert results == [[f"Simulated reply to: t{n}-{i}" for i in range(12)] for n in range(2)]
    assert wide_server.stats.peak_in_flight == 2  # reached, never exceeded
    assert wide_server.stats.completed == 24


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_one_client_used_from_two_threads_at_once(
    provider: str, wide_server: SimulatedServer
) -> None:
    client = make(provider, wide_server)
    results = in_threads([asking(client, "a"), asking(client, "b"), asking(client, "c")])
    assert [len(r) for r in results] == [12, 12, 12]
    assert results[1] == [f"Simulated reply to: b-{i}" for i in range(12)]
    assert wide_server.stats.peak_in_flight == 2
    assert client.stats.completed == 36 and client.stats.failed == 0


def test_a_lower_limit_in_another_thread_lowers_it_for_both(wide_server: SimulatedServer) -> None:
    first, second = make("ollama", wide_server, 3), make("ollama", wide_server, 1)
    results = in_threads([asking(first, "x"), asking(second, "y")])
    assert [len(r) for r in results] == [12, 12]
    assert wide_server.stats.peak_in_flight == 1


def test_separate_limits_stay_separate_across_threads(wide_server: SimulatedServer) -> None:
    clients = [
        OllamaClient("sim-model", host=wide_server.url, max_concurrent=2, share_limits=False)
        for _ in range(2)
    ]
    results = in_threads([asking(c, f"s{n}") for n, c in enumerate(clients)])
    assert [len(r) for r in results] == [12, 12]
    assert wide_server.stats.peak_in_flight == 4


def test_limiter_across_loops_with_cancellations_leaks_no_slot() -> None:
    limiter = ConcurrencyLimiter(2)
    peak = 0

    async def hold() -> None:
        nonlocal peak
        await limiter.acquire()
        try:
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0.001)
        finally:
            limiter.release()

    async def churn(seed: int) -> None:
        chooser = random.Random(seed)
        for _ in range(40):
            tasks = [asyncio.ensure_future(hold()) for _ in range(6)]
            await asyncio.sleep(chooser.random() * 0.003)
            for task in chooser.sample(tasks, 3):
                task.cancel()  # some while waiting, some while a slot is being handed over
            await asyncio.gather(*tasks, return_exceptions=True)

    with ThreadPoolExecutor(3) as pool:
        for future in [pool.submit(asyncio.run, churn(seed)) for seed in range(3)]:
            future.result(timeout=60)
    assert limiter.in_flight == 0 and limiter.waiting == 0
    assert peak == 2


def test_a_pause_in_one_thread_holds_back_another(wide_server: SimulatedServer) -> None:
    client = make("ollama", wide_server)
    paused, asked = threading.Event(), threading.Event()

    async def pause_and_stay() -> None:
        await client.generate_answer("before the pause")
        client._admission.get().pause(0.5)  # as a 429's Retry-After does
        paused.set()
        # this loop stays open while the other thread asks
        assert await asyncio.to_thread(asked.wait, 30)

    async def ask_after_pause() -> float:
        assert paused.wait(10)
        started = time.monotonic()
        await client.generate_answer("after the pause")
        asked.set()
        return time.monotonic() - started

    with ThreadPoolExecutor(2) as pool:
        stays = pool.submit(asyncio.run, pause_and_stay())
        waited = pool.submit(asyncio.run, ask_after_pause()).result(timeout=30)
        stays.result(timeout=30)
    assert waited >= 0.3  # the other thread's loop saw the pause
