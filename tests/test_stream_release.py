"""A stream left half-read gives its slot back as soon as nothing refers to it, or when it is
closed, and its HTTP answer is closed too; through the real SDKs against the simulator."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator

import pytest

from llmclient import BaseLLMClient, OllamaClient, OpenAIClient
from llmclient.testing import SimulatedServer

Factory = Callable[..., Awaitable[SimulatedServer]]
LONG = " ".join(f"word{i}" for i in range(40))  # the server is still sending when we stop


def make(provider: str, server: SimulatedServer) -> BaseLLMClient:
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, max_concurrent=1)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, max_concurrent=1)


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees objects (the cyclic GC may not run for seconds)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition()` holds (the test's wait_for bounds it)."""
    while not condition():  # noqa: ASYNC110 (the server's counters have no event)
        await asyncio.sleep(0.01)


async def admitted_after(client: BaseLLMClient, server: SimulatedServer) -> None:
    """The next request gets the slot, the client counts none in flight, the server saw the
    abandoned answer's connection close."""
    answer = await asyncio.wait_for(client.generate_answer("next"), 10)  # hang guard
    assert answer == "Simulated reply to: next"
    assert client.stats.in_flight == 0
    await asyncio.wait_for(until(lambda: server.stats.disconnected == 1), 10)
    assert server.stats.in_flight == 0


@pytest.mark.usefixtures("no_cyclic_gc")
@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_a_stream_left_by_break_frees_its_slot_once_unreferenced(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001, token_latency=0.05)
    async with make(provider, server) as client:
        async for _ in client.stream(LONG):  # no `async with`, no name kept
            break
        await asyncio.sleep(0)  # the loop runs the abandoned relay's close
        await admitted_after(client, server)


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_a_stream_closed_by_aclose_frees_its_slot(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001, token_latency=0.05)
    async with make(provider, server) as client:
        deltas = client.stream(LONG)
        async for _ in deltas:
            break
        assert client.stats.in_flight == 1
        await deltas.aclose()
        assert client.stats.in_flight == 0
        await admitted_after(client, server)
