"""The response cache through the real SDKs against the simulated server: keys, modes, sample
indexes, hits that cost nothing, identical requests in flight, streams and embeddings."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from llmclient import (
    BaseLLMClient,
    ConcurrencyProfile,
    ConfigurationError,
    OllamaClient,
    OpenAIClient,
    RetryPolicy,
    ServerError,
    Tool,
)
from llmclient.testing import Fault, SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]
PROVIDERS = ["ollama", "openai"]
INFERENCE = ("/api/chat", "/v1/chat/completions", "/api/embed", "/v1/embeddings")


class DictStore:
    """A cache store of the user's own (the `CacheStore` protocol): a dict in memory."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.gets = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return self.data.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self.data.setdefault(key, value)


def make_client(provider: str, server: SimulatedServer, **options: Any) -> BaseLLMClient:
    options.setdefault("profile", ConcurrencyProfile(name="test", retry=FAST_RETRY))
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, **options)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, **options)


def all_bytes(directory: Path) -> bytes:
    """Every file of `directory`, concatenated (the cache file and its WAL)."""
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()))


def requests(server: SimulatedServer) -> int:
    """Inference requests the server got (not the capacity questions of a first request)."""
    return sum(server.stats.by_path[path] for path in INFERENCE)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_rerun_replays_every_answer_without_a_request(
    provider: str, simulated_server_factory: Factory, tmp_path: Path
) -> None:
    server = await simulated_server_factory(latency=0.001)
    path = tmp_path / "cache.sqlite"
    prompts = [f"question {i}" for i in range(20)]
    async with make_client(provider, server, cache=path) as client:
        first = await asyncio.gather(*(client.generate(p, max_tokens=3) for p in prompts))
        assert client.stats.cache_misses == 20 and client.stats.cache_hits == 0
    assert requests(server) == 20
    async with make_client(provider, server, cache=str(path)) as client:
        again = await asyncio.gather(*(client.generate(p, max_tokens=3) for p in prompts))
        stats = client.stats
    assert requests(server) == 20  # nothing sent
    assert [c.text for c in again] == [c.text for c in first]
    assert [c.usage for c in again] == [c.usage for c in first]
    assert [c.finish_reason for c in again] == [c.finish_reason for c in first]
    assert all(c.attempts == 0 for c in again) and all(c.attempts == 1 for c in first)
    assert (stats.cache_hits, stats.cache_misses, stats.completed) == (20, 0, 0)


async def test_the_nth_identical_sampled_call_gets_the_nth_stored_sample(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    store = DictStore()
    async with make_client("openai", server, cache=store) as client:
        for _ in range(3):
            await client.generate("write a poem", temperature=0.9)
    assert requests(server) == 3 and len(store.data) == 3  # three samples, three entries
    async with make_client("openai", server, cache=store) as client:
        for _ in range(3):
            assert (await client.generate("write a poem", temperature=0.9)).attempts == 0
        assert requests(server) == 3
        await client.generate("write a poem", temperature=0.9)  # a 4th sample: a new one
    assert requests(server) == 4 and len(store.data) == 4


async def test_deterministic_mode_caches_only_temperature_0_or_a_seed(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    store = DictStore()
    calls: list[dict[str, Any]] = [
        {},  # the server's default temperature, which is not 0
        {"temperature": 0.7},
        {"temperature": 0},
        {"seed": 7},
        {"temperature": 0.7, "seed": 7},
        {"provider_options": {"temperature": 0}},
    ]
    for _ in range(2):
        async with make_client("ollama", server, cache=store, cache_mode="deterministic") as c:
            for params in calls:
                await c.generate("hello", **params)
    assert requests(server) == 2 + 2 + 4  # the two sampled calls twice, the others once
    assert len(store.data) == 4


async def test_temperature_set_on_the_client_counts(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    store = DictStore()
    for _ in range(2):
        async with make_client(
            "openai", server, cache=store, cache_mode="deterministic", temperature=0
        ) as client:
            await client.generate("hello")
    assert requests(server) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"max_tokens": 5},
        {"top_p": 0.5},
        {"stop": ["x"]},
        {"json_mode": True},
        {"logprobs": True},
        {"presence_penalty": 0.5},
        {"repetition_penalty": 1.1},
        {"provider_options": {"mirostat": 1}},
        {"model": "other-model"},
        {"seed": 1},
    ],
)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_request_field_is_in_the_key(
    provider: str, change: dict[str, Any], simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    store = DictStore()
    async with make_client(provider, server, cache=store) as client:
        await client.generate("hello", temperature=0)
        await client.generate("hello", temperature=0)
        assert requests(server) == 1
        await client.generate("hello", temperature=0, **change)
    assert requests(server) == 2


async def test_the_system_prompt_and_messages_are_in_the_key(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    store = DictStore()
    async with make_client("openai", server, cache=store, temperature=0) as client:
        await client.generate([{"role": "user", "content": "a"}])
        await client.generate(
            [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]
        )
    async with make_client("openai", server, cache=store, temperature=0, system_prompt="t") as c:
        await c.generate([{"role": "user", "content": "a"}])
    assert requests(server) == 3


async def test_the_endpoint_is_in_the_key_and_the_api_key_is_not(
    simulated_server_factory: Factory, tmp_path: Path
) -> None:
    one = await simulated_server_factory(latency=0.001)
    two = await simulated_server_factory(latency=0.001)
    path = tmp_path / "c.sqlite"
    for key in ("sk-first-secret", "sk-second-secret"):
        async with make_client("openai", one, cache=path, api_key=key, temperature=0) as client:
            await client.generate("hello")
    assert requests(one) == 1  # another key, the same endpoint: a hit
    async with make_client("openai", two, cache=path, temperature=0) as client:
        await client.generate("hello")
    assert requests(two) == 1  # another server: a miss
    assert b"secret" not in all_bytes(tmp_path)


async def test_a_hit_costs_no_slot_and_no_rate_budget(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001, token_latency=0.2)
    store = DictStore()
    async with make_client("ollama", server, cache=store, temperature=0) as client:
        await client.generate("cached", max_tokens=1)
    async with make_client(
        "ollama", server, cache=store, temperature=0, max_concurrent=1, rpm=1, share_limits=False
    ) as client:
        # The one slot is held by a slow request, and the rpm budget (1 a minute) is spent.
        busy = asyncio.create_task(client.generate("slow one", max_tokens=20))
        await asyncio.sleep(0.2)
        assert client.stats.in_flight == 1
        for _ in range(50):
            assert (await client.generate("cached", max_tokens=1)).attempts == 0
        assert not busy.done()  # the hits did not wait for its slot, nor a minute for rpm
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy
    assert requests(server) <= 2  # the first "cached" and (if it got there) the slow one


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_identical_requests_in_flight_are_sent_once(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.2, parallel=8)
    async with make_client(provider, server, cache=DictStore(), max_concurrent=8) as client:
        answers = await asyncio.gather(*(client.generate("same", temperature=0) for _ in range(10)))
        stats = client.stats
    assert requests(server) == 1
    assert {a.text for a in answers} == {"Simulated reply to: same"}
    assert sorted(a.attempts for a in answers) == [0] * 9 + [1]
    assert (stats.cache_hits, stats.cache_misses) == (9, 1)


async def test_the_error_of_a_shared_request_reaches_every_caller(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.1, parallel=8)
    server.inject(Fault.INTERNAL_ERROR)
    one_try = ConcurrencyProfile(name="test", retry=RetryPolicy(max_attempts=1))
    async with make_client("openai", server, cache=DictStore(), profile=one_try) as client:
        results = await asyncio.gather(
            *(client.generate("same", temperature=0) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, ServerError) for r in results), results
        assert requests(server) == 1
        assert (await client.generate("same", temperature=0)).attempts == 1  # not stored
    assert requests(server) == 2


async def test_a_waiter_sends_its_own_request_when_the_first_is_cancelled(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.3)
    async with make_client("ollama", server, cache=DictStore(), max_concurrent=4) as client:
        first = asyncio.create_task(client.generate("same", temperature=0))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(client.generate("same", temperature=0))
        await asyncio.sleep(0.05)
        first.cancel()
        answer = await second
    assert answer.text == "Simulated reply to: same" and answer.attempts == 1
    assert requests(server) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streams_replay_as_streams(
    provider: str, simulated_server_factory: Factory, tmp_path: Path
) -> None:
    server = await simulated_server_factory(latency=0.001)
    path = tmp_path / "c.sqlite"
    seen = []
    for _ in range(2):
        async with make_client(provider, server, cache=path) as client:
            async with client.stream("tell me more", max_tokens=3) as deltas:
                seen.append(([d async for d in deltas], deltas.finish_reason, deltas.usage))
            stats = client.stats
    assert requests(server) == 1
    assert seen[0] == seen[1] and len(seen[0][0]) == 3
    assert (stats.cache_hits, stats.cache_misses) == (1, 0)


class City(BaseModel):
    name: str
    population: int


WEATHER = Tool(
    "weather",
    "Today's weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_hit_keeps_tool_calls_and_the_parsed_answer(
    provider: str, simulated_server_factory: Factory, tmp_path: Path
) -> None:
    server = await simulated_server_factory(latency=0.001)
    path = tmp_path / "c.sqlite"
    seen = []
    for _ in range(2):
        async with make_client(provider, server, cache=path) as client:
            city = await client.generate("a city", response_format=City)
            call = await client.generate("the weather?", tools=[WEATHER])
            async with client.stream("the weather, streamed?", tools=[WEATHER]) as deltas:
                _ = [d async for d in deltas]
            seen.append((city.parsed, call.tool_calls, deltas.tool_calls))
    assert requests(server) == 3  # the second round was all hits
    assert isinstance(seen[1][0], City) and seen[1] == seen[0]
    assert seen[1][1][0].name == "weather" and seen[1][2][0].name == "weather"


async def test_a_stream_left_early_is_not_stored(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    store = DictStore()
    async with make_client("openai", server, cache=store, temperature=0) as client:
        async with client.stream("one two three") as deltas:
            async for _ in deltas:
                break
        assert store.data == {}
        async with client.stream("one two three") as deltas:
            whole = [d async for d in deltas]
        assert len(store.data) == 1
        async with client.stream("one two three") as deltas:
            assert [d async for d in deltas] == whole
    assert requests(server) == 2


async def test_a_broken_stream_is_not_stored(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject(Fault.STREAM_ERROR)
    store = DictStore()
    async with make_client("ollama", server, cache=store, temperature=0) as client:
        with pytest.raises(ServerError):
            async with client.stream("one two three four") as deltas:
                async for _ in deltas:
                    pass
    assert store.data == {}


async def test_streams_and_whole_answers_are_kept_apart(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    store = DictStore()
    async with make_client("openai", server, cache=store, temperature=0) as client:
        await client.generate("hello")
        async with client.stream("hello") as deltas:
            _ = [d async for d in deltas]
    assert requests(server) == 2 and len(store.data) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_embeddings_are_cached_per_text(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    store = DictStore()
    async with make_client(provider, server, cache=store) as client:
        first = await client.embed(["a", "b"])
        mixed = await client.embed(["b", "c", "a"])
        stats = client.stats
    assert mixed[0] == first[1] and mixed[2] == first[0]
    assert server.stats.embed_inputs == 3
    assert (stats.cache_hits, stats.cache_misses) == (2, 3)


async def test_a_failing_store_warns_and_the_call_goes_out(
    simulated_server_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(DictStore):
        async def get(self, key: str) -> bytes | None:
            self.gets += 1
            raise OSError("store down")

        async def set(self, key: str, value: bytes) -> None:
            raise OSError("store down")

    server = await simulated_server_factory(latency=0.001)
    broken = Broken()
    with caplog.at_level(logging.WARNING, logger="llmclient"):
        async with make_client("openai", server, cache=broken, temperature=0) as client:
            for _ in range(3):
                assert (await client.generate("hi")).text == "Simulated reply to: hi"
    assert broken.gets == 1  # after a failure the store rests a while: no call waits on it
    warnings = [r.getMessage() for r in caplog.records if "cache" in r.getMessage()]
    assert len(warnings) == 2, warnings  # the first lookup and the first store, not every one
    assert "lookup failed (OSError: store down); the request is sent" in warnings[0]
    assert requests(server) == 3


# --- settings -------------------------------------------------------------------------------


async def test_the_cache_setting_comes_from_the_environment(
    simulated_server_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await simulated_server_factory(latency=0.001)
    monkeypatch.setenv("LLMCLIENT_CACHE", str(tmp_path / "env.sqlite"))
    monkeypatch.setenv("LLMCLIENT_OPENAI_CACHE_MODE", "deterministic")
    for _ in range(2):
        async with make_client("openai", server) as client:
            await client.generate("hi", temperature=0)
            await client.generate("hi")
    assert requests(server) == 3
    assert (tmp_path / "env.sqlite").exists()
    rows = {name: (value, source) for name, value, source in client.settings.rows()}
    assert rows["cache"] == (str(tmp_path / "env.sqlite"), "env LLMCLIENT_CACHE")
    assert rows["cache_mode"] == ("deterministic", "env LLMCLIENT_OPENAI_CACHE_MODE")
    async with make_client("openai", server, cache="off") as client:
        await client.generate("hi", temperature=0)
        assert client.stats.cache_misses == 0
    assert requests(server) == 4


def test_the_cache_is_off_by_default_and_shown() -> None:
    settings = OllamaClient.settings_for("m")
    rows = {name: (value, source) for name, value, source in settings.rows()}
    assert rows["cache"] == ("off", "default")
    assert rows["cache_mode"] == ("replay", "default")
    shown = OllamaClient.settings_for("m", cache="redis://user:pw@127.0.0.1:1/0").rows()
    assert ("cache", "redis://127.0.0.1:1/0", "argument") in shown


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"cache": ""}, "cache=''"),
        ({"cache": 3}, "cache=3"),
        ({"cache": "http://x/y"}, "cache='http://x/y'"),
        ({"cache_mode": "always"}, "cache_mode='always'"),
    ],
)
def test_a_bad_cache_setting_is_named(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"invalid argument: {named}"):
        OllamaClient("m", **options)


def test_a_bad_cache_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCLIENT_CACHE_MODE", "sometimes")
    with pytest.raises(ConfigurationError, match="LLMCLIENT_CACHE_MODE='sometimes'"):
        OllamaClient("m", cache="x.sqlite")


def test_a_store_object_is_used_as_given(tmp_path: Path) -> None:
    store = DictStore()
    client = OllamaClient("m", cache=store)
    assert client._cache is not None and client._cache.store is store
    assert ("cache", repr(store), "argument") in client.settings.rows()


async def test_the_sqlite_file_is_made_at_first_use_not_by_the_constructor(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    path = tmp_path / "later.sqlite"
    async with make_client("ollama", server, cache=path) as client:
        assert not path.exists()
        await client.generate("hi")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 1


async def test_an_entry_that_cannot_be_decoded_is_a_miss(
    simulated_server_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    class Garbled(DictStore):
        async def get(self, key: str) -> bytes | None:
            return b"\x00 not json"

    server = await simulated_server_factory(latency=0.001)
    with caplog.at_level(logging.WARNING, logger="llmclient"):
        async with make_client("ollama", server, cache=Garbled(), temperature=0) as client:
            assert (await client.generate("hi")).attempts == 1
            async with client.stream("hi") as deltas:
                assert [d async for d in deltas]
            assert len(await client.embed(["a"])) == 1
    assert requests(server) == 3
    assert any("decoding failed" in r.getMessage() for r in caplog.records)
