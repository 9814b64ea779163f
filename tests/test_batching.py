"""BatchRequestManager through a real client and the simulated server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from llmclient import BatchRequestManager, ConcurrencyProfile, OllamaClient, ServerError
from llmclient.testing import SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]


def client(server: SimulatedServer, **options: object) -> OllamaClient:
    profile = ConcurrencyProfile(retry=FAST_RETRY.model_copy(update={"max_attempts": 1}))
    return OllamaClient("sim-model", host=server.url, profile=profile, **options)  # type: ignore[arg-type]


async def test_answers_come_back_to_their_callers(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.005)
    async with client(server) as llm, BatchRequestManager(llm, batch_size=4) as manager:
        answers = await asyncio.gather(*(manager.add_request(f"q{i}") for i in range(10)))
    assert answers == [f"Simulated reply to: q{i}" for i in range(10)]


async def test_batch_waits_for_size_or_time(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with client(server) as llm:
        manager = BatchRequestManager(llm, batch_size=3, max_wait_time=0.3)
        started = time.monotonic()
        lone = asyncio.create_task(manager.add_request("alone"))
        await asyncio.sleep(0.1)
        assert server.stats.requests == 0  # still waiting for its batch
        assert manager.pending == 1
        assert await lone == "Simulated reply to: alone"
        assert time.monotonic() - started >= 0.29
        await manager.aclose()
        # A full batch goes at once: with a 60 s timer, waiting for it would time out here.
        patient = BatchRequestManager(llm, batch_size=3, max_wait_time=60)
        full = [patient.add_request(f"f{i}") for i in range(3)]
        async with asyncio.timeout(10):
            assert await asyncio.gather(*full) == [f"Simulated reply to: f{i}" for i in range(3)]
        await patient.aclose()


async def test_history_and_extra_params_are_passed(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with client(server) as llm, BatchRequestManager(llm, max_wait_time=0.01) as manager:
        answer = await manager.add_request("x y z", ["u", "a"], {"max_tokens": 2})
    assert answer == "Simulated reply"


async def test_two_managers_stay_within_the_client_limit(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(parallel=32, latency=0.01)
    async with client(server, max_concurrent=3) as llm:
        first = BatchRequestManager(llm, batch_size=10, max_wait_time=0.01)
        second = BatchRequestManager(llm, batch_size=25, max_wait_time=0.01)
        calls = [m.add_request(f"q{i}") for i in range(60) for m in (first, second)]
        assert len(await asyncio.gather(*calls)) == 120
    assert server.stats.peak_in_flight == 3


async def test_manager_max_concurrent_narrows_further(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(parallel=32, latency=0.01)
    async with client(server, max_concurrent=8) as llm:
        manager = BatchRequestManager(llm, batch_size=20, max_wait_time=0.01, max_concurrent=2)
        await asyncio.gather(*(manager.add_request(f"q{i}") for i in range(20)))
    assert server.stats.peak_in_flight == 2


async def test_each_request_fails_on_its_own(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with client(server) as llm, BatchRequestManager(llm, batch_size=5) as manager:
        server.inject("500", count=2)
        results = await asyncio.gather(
            *(manager.add_request(f"q{i}") for i in range(5)), return_exceptions=True
        )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 2
    assert all(isinstance(e, ServerError) for e in errors)
    assert sum(isinstance(r, str) for r in results) == 3


async def test_without_batching_requests_go_straight_through(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with client(server) as llm:
        manager = BatchRequestManager(llm, max_wait_time=5.0, enable_batching=False)
        assert await asyncio.wait_for(manager.add_request("now"), 1.0) == "Simulated reply to: now"


async def test_cancelled_caller_releases_its_slot(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.5)
    async with client(server, max_concurrent=1) as llm:
        manager = BatchRequestManager(llm, batch_size=1)
        task = asyncio.create_task(manager.add_request("slow"))
        await asyncio.sleep(0.1)
        assert llm.stats.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)
        assert llm.stats.in_flight == 0


async def test_closed_manager_refuses_requests(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with client(server) as llm:
        manager = BatchRequestManager(llm)
        await manager.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await manager.add_request("late")


@pytest.mark.parametrize(
    ("options", "name", "error"),
    [
        ({"batch_size": 0}, "batch_size=0", ValueError),
        ({"batch_size": 2.5}, "batch_size=2.5", TypeError),
        ({"max_wait_time": -1}, "max_wait_time=-1", ValueError),
        ({"max_wait_time": "1"}, "max_wait_time='1'", TypeError),
        ({"max_concurrent": 0}, "max_concurrent=0", ValueError),
    ],
)
def test_bad_arguments_are_refused(
    options: dict[str, object], name: str, error: type[Exception]
) -> None:
    llm = OllamaClient("sim-model")
    with pytest.raises(error, match=name):
        BatchRequestManager(llm, **options)  # type: ignore[arg-type]
