"""The Redis cache store against a real redis-server (LLMCLIENT_REQUIRE_REDIS=1 in CI)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from llmclient import ConfigurationError, OpenAIClient
from llmclient.cache import RedisCache
from llmclient.testing import SimulatedServer
from llmclient.testing.redis import RedisServer

Factory = Callable[..., Awaitable[SimulatedServer]]


async def test_a_rerun_through_redis_sends_nothing(
    redis_server: RedisServer, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    prompts = [f"q{i}" for i in range(10)]
    for _ in range(2):
        async with OpenAIClient(
            "sim-model", base_url=server.openai_base_url, cache=redis_server.url
        ) as client:
            answers = await asyncio.gather(*(client.generate(p) for p in prompts))
            async with client.stream("streamed", temperature=0) as deltas:
                assert "".join([d async for d in deltas]) == "Simulated reply to: streamed"
    assert server.stats.by_path["/v1/chat/completions"] == 11
    assert [a.attempts for a in answers] == [0] * 10
    assert (client.stats.cache_hits, client.stats.cache_misses) == (11, 0)


async def test_entries_expire_after_the_ttl(redis_server: RedisServer) -> None:
    store = RedisCache(redis_server.url, ttl=0.2)
    await store.set("k", b"v")
    await store.set("k", b"other")  # a stored key keeps its first value
    assert await store.get("k") == b"v"
    await asyncio.sleep(0.4)
    assert await store.get("k") is None
    await store.aclose()


async def test_an_unreachable_redis_warns_and_the_call_still_returns(
    redis_server: RedisServer,
    simulated_server_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="llmclient"):
        async with OpenAIClient(
            "sim-model", base_url=server.openai_base_url, cache=redis_server.url, temperature=0
        ) as client:
            assert (await client.generate("hi")).text == "Simulated reply to: hi"
    messages = [r.getMessage() for r in caplog.records]
    assert any("lookup failed (ConnectionError" in m for m in messages), messages
    assert any("store failed" in m for m in messages), messages


def test_the_password_of_a_redis_url_is_never_shown() -> None:
    store = RedisCache("redis://user:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in repr(store)


async def test_clear_deletes_the_prefix_entries_only(redis_server: RedisServer) -> None:
    """`clear()` removes this store's keys (a prefix with glob characters is taken
    literally) and leaves every other key of the Redis."""
    store = RedisCache(redis_server.url, prefix="job[1]*:")
    neighbour = RedisCache(redis_server.url, prefix="job[1]x:")  # what job[1]*: matches as a glob
    for i in range(1_500):  # more than one SCAN/UNLINK batch
        await store.set(f"k{i}", b"v")
    await neighbour.set("k0", b"kept")
    assert await store.clear() == 1_500
    assert await store.get("k0") is None
    assert await neighbour.get("k0") == b"kept"
    assert await store.clear() == 0
    await store.aclose()
    await neighbour.aclose()


async def test_clear_refuses_an_empty_prefix(redis_server: RedisServer) -> None:
    store = RedisCache(redis_server.url, prefix="")
    await store.set("k", b"v")
    with pytest.raises(ConfigurationError, match="prefix=''"):
        await store.clear()
    assert await store.get("k") == b"v"
    await store.aclose()
