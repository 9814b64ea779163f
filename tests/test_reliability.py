"""Every fault ends in one clear llmclient error, retried where it should be; through the real
SDKs over loopback against the simulated server misbehaving exactly so."""

from __future__ import annotations

import asyncio
import gc
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from llmclient import (
    AuthenticationError,
    BaseLLMClient,
    ConcurrencyProfile,
    IncompleteStreamError,
    LLMConnectionError,
    LLMError,
    MalformedResponseError,
    OllamaClient,
    OpenAIClient,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from llmclient.testing import SimulatedServer

Factory = Callable[..., Awaitable[SimulatedServer]]
PROVIDERS = ["ollama", "openai"]
KEY = "sk-test-KEY-0123456789abcdef"
RETRY = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0)


def make(provider: str, server: SimulatedServer, **options: Any) -> BaseLLMClient:
    options.setdefault("profile", ConcurrencyProfile(name="test", retry=RETRY))
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, embed_model="sim-embed", **options)
    return OpenAIClient(
        "sim-model", base_url=server.openai_base_url, embed_model="sim-embed", **options
    )


def chat_path(provider: str) -> str:
    return "/api/chat" if provider == "ollama" else "/v1/chat/completions"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["html", "json_array", "missing_fields", "corrupt_gzip"])
async def test_a_malformed_answer_is_retried_then_named(
    provider: str, fault: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server) as client:
        server.inject(fault)
        completion = await client.generate("hello there")  # the retry gets a good answer
        assert completion.text == "Simulated reply to: hello there"
        assert completion.attempts == 2
        server.inject(fault, count=3)
        with pytest.raises(MalformedResponseError) as caught:
            await client.generate("again")
    assert caught.value.endpoint == client.endpoint_name
    assert caught.value.attempts == 3
    assert client.stats.failed == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["html", "json_array", "missing_fields", "corrupt_gzip"])
async def test_a_malformed_embeddings_answer_is_named(
    provider: str, fault: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server, max_attempts=1) as client:
        server.inject(fault)
        with pytest.raises(MalformedResponseError):
            await client.embed(["one", "two"])
        assert len(await client.embed(["one", "two"])) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_cut_off_after_text_is_incomplete(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server) as client:
        server.inject("truncated_stream")
        received: list[str] = []
        with pytest.raises(IncompleteStreamError):
            async with client.stream("one two three four five six") as deltas:
                async for delta in deltas:
                    received.append(delta)
        assert received  # some text came first, so it was not retried
        assert server.stats.by_path[chat_path(provider)] == 1
        assert client.stats.failed == 1 and client.stats.completed == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_whole_stream_reports_its_finish_reason(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server) as client, client.stream("a b c", max_tokens=2) as deltas:
        text = "".join([delta async for delta in deltas])
    assert text == "Simulated reply"
    assert deltas.finish_reason == "length"
    assert client.stats.completed == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_error_event_mid_stream_is_a_server_error(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server) as client:
        server.inject("stream_error")
        with pytest.raises(ServerError) as caught:
            async with client.stream("one two three four five six") as deltas:
                async for _ in deltas:
                    pass
        assert caught.value.endpoint == client.endpoint_name
        assert client.stats.failed == 1 and client.stats.completed == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_cut_off_whole_answer_is_retried(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server) as client:
        server.inject("truncated_stream")
        completion = await client.generate("hello")
        assert completion.attempts == 2


async def test_ollama_honours_retry_after(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make("ollama", server) as client:
        server.inject("429", retry_after=0.3)
        assert await client.generate_answer("wait") == "Simulated reply to: wait"
    (first, _), (second, _) = server.stats.arrivals
    assert second - first >= 0.29


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_day_long_retry_after_fails_at_once_and_does_not_pause_the_endpoint(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    profile = ConcurrencyProfile(name="t", retry=RetryPolicy(max_elapsed=5))  # max_server_wait 60
    async with make(provider, server, profile=profile) as client:
        server.inject("429", retry_after=86400)
        with pytest.raises(RateLimitError, match=r"86400s, more than max_server_wait=60s; try ag"):
            await client.generate("quota")
        endpoint = client._admission.latest()
        assert endpoint is not None and await endpoint.state.paused_for() == 0  # type: ignore[union-attr]
        async with asyncio.timeout(30):  # paused for the 60 s cap, this would not end
            assert await client.generate_answer("later") == "Simulated reply to: later"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_retry_after_past_the_clock_still_fails_with_a_rate_limit_error(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server) as client:
        server.inject("429", retry_after=1e30)
        with pytest.raises(RateLimitError, match=r"1e\+30s.*try again in 1e\+30s") as caught:
            await client.generate("quota")
    assert caught.value.retry_after == 1e30


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_a_key_echoed_by_the_server_is_nowhere_in_the_error(
    provider: str, streamed: bool, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server, api_key=KEY) as client:
        server.inject("echo_key")
        with pytest.raises(AuthenticationError) as caught:
            if streamed:
                async with client.stream("hi") as deltas:
                    async for _ in deltas:
                        pass
            else:
                await client.generate("hi")
    error = caught.value
    printed = "".join(traceback.format_exception(error))
    assert KEY not in printed and KEY not in repr(error) and KEY not in str(error)
    assert "***" in error.message
    chain: BaseException | None = error
    seen: set[int] = set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        assert KEY not in str(chain) and KEY not in repr(getattr(chain, "body", None))
        chain = chain.__cause__ or (None if chain.__suppress_context__ else chain.__context__)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_refused_connections_are_fatal_dropped_ones_are_not(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server, max_attempts=1) as client:
        server.inject("drop")
        with pytest.raises(LLMConnectionError) as dropped:
            await client.generate("x")
        assert not dropped.value.fatal
        await server.stop()
        with pytest.raises(LLMConnectionError) as refused:
            await client.generate("x")
        assert refused.value.fatal


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_dropped_half_read_warns_and_frees_its_slot(
    provider: str, simulated_server_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server, max_concurrent=1) as client:
        deltas = client.stream("one two three four five six")
        async for _ in deltas:
            break
        assert client.stats.in_flight == 1  # held by the half-read stream
        with caplog.at_level(logging.WARNING, logger="llmclient"):
            del deltas
            gc.collect()
            await asyncio.sleep(0.05)  # the loop closes the abandoned generator
        assert "garbage-collected before it ended" in caplog.text
        assert client.stats.in_flight == 0
        assert await client.generate_answer("next") == "Simulated reply to: next"


def test_every_error_kind_is_an_llm_error() -> None:
    assert issubclass(IncompleteStreamError, MalformedResponseError)
    assert issubclass(MalformedResponseError, LLMError)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_back_pressure_outlasts_the_attempt_limit(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make(provider, server, max_attempts=2) as client:
        server.inject("503", count=5)
        completion = await client.generate("busy server")
    assert completion.attempts == 6
    assert server.stats.statuses[503] == 5


async def test_the_retry_budget_spares_a_dead_server(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001, fault_rates={"500": 1.0})
    policy = RETRY.model_copy(update={"max_attempts": 5, "budget_tokens": 6})
    async with make("ollama", server, profile=ConcurrencyProfile(retry=policy)) as client:
        for _ in range(30):
            with pytest.raises(ServerError):
                await client.generate("anyone there?")
    # 6 tokens, retries while more than 3 are left: the first call fails three times (5, 4, 3
    # left), every later call once: 32 requests, where 30 calls x 5 attempts would be 150.
    assert server.stats.by_path["/api/chat"] == 32
