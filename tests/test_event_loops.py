"""One client used from several event loops in turn: each loop gets its own connections."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from llmclient import BaseLLMClient, OllamaClient, OpenAIClient, run_concurrent_sync
from llmclient.testing import SimulatedServer


@pytest.fixture
def server() -> Iterator[SimulatedServer]:
    """A simulated server running in its own thread and loop, so tests may call asyncio.run."""
    ready = threading.Event()
    stop: asyncio.Event | None = None
    holder: dict[str, Any] = {}

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with SimulatedServer(parallel=2, latency=0.005) as simulated:
            holder["server"] = simulated
            holder["loop"] = asyncio.get_running_loop()
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder["server"]
    holder["loop"].call_soon_threadsafe(stop.set)  # type: ignore[union-attr]
    thread.join(10)


def is_closed(sdk: Any) -> bool:
    http = sdk._client if hasattr(sdk, "_client") else sdk
    return bool(http.is_closed() if callable(http.is_closed) else http.is_closed)


def make(provider: str, server: SimulatedServer) -> BaseLLMClient:
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, max_concurrent=2)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, max_concurrent=2)


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_one_client_in_successive_asyncio_runs(provider: str, server: SimulatedServer) -> None:
    client = make(provider, server)
    pools = []
    for round_ in range(3):
        answer = asyncio.run(client.generate_answer(f"round {round_}"))
        assert answer == f"Simulated reply to: round {round_}"
        pools.append(client._sdks.latest())
    asyncio.run(client.aclose())
    assert server.stats.completed == 3
    assert len({id(pool) for pool in pools}) == 3  # one SDK client per loop
    assert all(is_closed(pool) for pool in pools)  # each closed as its loop shut down


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_run_concurrent_sync_many_times_with_one_client(
    provider: str, server: SimulatedServer
) -> None:
    client = make(provider, server)
    prompts = [f"q{i}" for i in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # each loop's pool closed in its loop
        for _ in range(3):
            answers = run_concurrent_sync(client.generate_answer, prompts, progress_bar=False)
            assert answers == [f"Simulated reply to: {p}" for p in prompts]
        gc.collect()
    assert server.stats.completed == 30
    assert client.stats.completed == 30 and client.stats.failed == 0
