"""One client used from several event loops in turn: each loop gets its own connections."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from llmclient import BaseLLMClient, OllamaClient, OpenAIClient, run_concurrent_sync
from llmclient.testing import SimulatedServer


def served(server: SimulatedServer) -> int:
    """Answers the server finished sending, once its thread has caught up with the client."""
    deadline = time.monotonic() + 5
    while server.stats.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.stats.completed


def is_closed(sdk: Any) -> bool:
    http = sdk._client if hasattr(sdk, "_client") else sdk
    return bool(http.is_closed() if callable(http.is_closed) else http.is_closed)


def make(provider: str, threaded_server: SimulatedServer) -> BaseLLMClient:
    if provider == "ollama":
        return OllamaClient("sim-model", host=threaded_server.url, max_concurrent=2)
    return OpenAIClient("sim-model", base_url=threaded_server.openai_base_url, max_concurrent=2)


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_one_client_in_successive_asyncio_runs(
    provider: str, threaded_server: SimulatedServer
) -> None:
    client = make(provider, threaded_server)
    pools = []
    for round_ in range(3):
        answer = asyncio.run(client.generate_answer(f"round {round_}"))
        assert answer == f"Simulated reply to: round {round_}"
        pools.append(client._sdks.latest())
    asyncio.run(client.aclose())
    assert served(threaded_server) == 3
    assert len({id(pool) for pool in pools}) == 3  # one SDK client per loop
    assert all(is_closed(pool) for pool in pools)  # each closed as its loop shut down


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_run_concurrent_sync_many_times_with_one_client(
    provider: str, threaded_server: SimulatedServer
) -> None:
    client = make(provider, threaded_server)
    prompts = [f"q{i}" for i in range(10)]
    pools = []
    for _ in range(3):
        answers = run_concurrent_sync(client.generate_answer, prompts, progress_bar=False)
        assert answers == [f"Simulated reply to: {p}" for p in prompts]
        pools.append(client._sdks.latest())
    assert all(is_closed(pool) for pool in pools)  # each loop's pool closed in its loop
    assert served(threaded_server) == 30
    assert client.stats.completed == 30 and client.stats.failed == 0
