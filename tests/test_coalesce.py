"""Embedding calls from many coroutines are coalesced into few provider requests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from llmclient import ConcurrencyProfile, LLMError, OllamaClient, OpenAIClient
from llmclient.clients.base import BaseLLMClient
from llmclient.testing import SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]


def client_for(
    provider: str, server: SimulatedServer, batch_size: int = 32, wait: float = 0.01, **options: Any
) -> BaseLLMClient:
    profile = ConcurrencyProfile(
        retry=FAST_RETRY, embed_batch_size=batch_size, embed_batch_wait=wait
    )
    if provider == "ollama":
        return OllamaClient("sim-embed", host=server.url, profile=profile, **options)
    return OpenAIClient("sim-embed", base_url=server.openai_base_url, profile=profile, **options)


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_concurrent_embeds_share_requests(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.005)
    path = "/api/embed" if provider == "ollama" else "/v1/embeddings"
    async with client_for(provider, server, batch_size=10, wait=0.05) as client:
        texts = [f"text number {i}" for i in range(100)]
        vectors = await asyncio.gather(*(client.embed(t) for t in texts))
        assert server.stats.embed_inputs == 100
        assert server.stats.by_path[path] <= 12
        async with client_for(provider, server) as other:
            alone = await other.embed(texts[37])
        assert vectors[37] == [pytest.approx(alone[0])]
        assert vectors[0] != vectors[1]


async def test_a_failed_request_fails_only_its_callers(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.005)
    async with client_for("ollama", server, batch_size=5, wait=0.05) as client:
        server.inject("401", path="/api/embed")
        results = await asyncio.gather(
            *(client.embed(f"t{i}") for i in range(10)), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 5
        assert all(isinstance(r, LLMError) for r in failed)
        assert all(isinstance(r, list) and len(r) == 1 for r in results[5:])
        assert server.stats.by_path["/api/embed"] == 2


async def test_large_calls_are_split_and_keep_order(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with client_for("openai", server, batch_size=7, wait=0.0) as client:
        texts = [f"w{i}" for i in range(30)]
        together = await client.embed(texts)
        assert server.stats.by_path["/v1/embeddings"] == 5  # ceil(30 / 7)
        singles = [await client.embed(t) for t in texts[:3]]
        assert [v[0] for v in singles] == [pytest.approx(v) for v in together[:3]]


async def test_cancelled_caller_leaves_the_batch(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with client_for("ollama", server, batch_size=100, wait=0.1) as client:
        leaving = asyncio.create_task(client.embed(["leave", "me"]))
        staying = asyncio.create_task(client.embed("stay"))
        await asyncio.sleep(0.01)
        leaving.cancel()
        assert len(await staying) == 1
        assert server.stats.embed_inputs == 1
