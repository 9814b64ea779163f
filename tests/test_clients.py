"""Client behaviour through the real SDKs over loopback HTTP against the simulated server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from llmclient import (
    AuthenticationError,
    BaseLLMClient,
    ConcurrencyProfile,
    ConfigurationError,
    InvalidRequestError,
    OllamaClient,
    OpenAIClient,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    UnsupportedFeatureError,
)
from llmclient.testing import SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]
PROVIDERS = ["ollama", "openai"]


def make_client(provider: str, server: SimulatedServer, **options: Any) -> BaseLLMClient:
    options.setdefault("profile", ConcurrencyProfile(name="test", retry=FAST_RETRY))
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, **options)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, **options)


def chat_path(provider: str) -> str:
    return "/api/chat" if provider == "ollama" else "/v1/chat/completions"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_answers_usage_and_finish_reason(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client(provider, server) as client:
        assert await client.generate_answer("hello there") == "Simulated reply to: hello there"
        completion = await client.generate("one two three four", max_tokens=2)
        assert completion.text == "Simulated reply"
        assert completion.finish_reason == "length"
        assert completion.usage is not None and completion.usage.completion_tokens == 2
        assert completion.attempts == 1
        answer = await client.generate_answer("third", history=["first", "second"])
        assert answer == "Simulated reply to: third"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_topk_per_token_has_probabilities(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client(provider, server) as client:
        tokens = await client.generate_topk_per_token("what comes next", top_logprobs=3)
        assert len(tokens) == 1
        token = tokens[0]
        assert token.text == "Simulated"
        assert 0 < token.prob <= 1
        assert token.logprob <= 0
        assert len(token.top_candidates) == 3
        assert all(0 < c.prob <= 1 for c in token.top_candidates)
        assert max(c.prob for c in token.top_candidates) == pytest.approx(token.prob)
        with pytest.raises(UnsupportedFeatureError, match=provider):
            await client.generate_inputs_prob("anything")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_and_embed(provider: str, simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001, embedding_dim=8)
    async with make_client(provider, server) as client:
        deltas = [delta async for delta in client.stream("stream me")]
        assert "".join(deltas) == "Simulated reply to: stream me"
        assert len(deltas) == 5
        vectors = await client.embed(["alpha", "beta", "alpha"])
        assert len(vectors) == 3 and all(len(v) == 8 for v in vectors)
        assert vectors[0] == pytest.approx(vectors[2])
        assert vectors[0] != pytest.approx(vectors[1])
        assert await client.embed([]) == []
        assert len(await client.embed("single")) == 1


async def test_two_clients_share_one_endpoint_limit(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(parallel=16, latency=0.02)
    first = make_client("ollama", server, max_concurrent=4)
    second = make_client("ollama", server, max_concurrent=4)
    calls = [c.generate_answer(f"q{i}") for i in range(100) for c in (first, second)]
    answers = await asyncio.gather(*calls)
    assert len(answers) == 200
    assert server.stats.peak_in_flight == 4
    await first.aclose()
    await second.aclose()


async def test_share_limits_false_gives_each_client_its_own(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(parallel=16, latency=0.02)
    first = make_client("ollama", server, max_concurrent=4, share_limits=False)
    second = make_client("ollama", server, max_concurrent=4, share_limits=False)
    await asyncio.gather(*(c.generate_answer(f"q{i}") for i in range(100) for c in (first, second)))
    assert server.stats.peak_in_flight == 8
    await first.aclose()
    await second.aclose()


async def test_openai_and_ollama_clients_of_one_server_share_its_limit(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(parallel=16, latency=0.02)
    native = make_client("ollama", server, max_concurrent=3)
    compat = make_client("openai", server, max_concurrent=3)
    await asyncio.gather(*(c.generate_answer("q") for _ in range(30) for c in (native, compat)))
    assert server.stats.peak_in_flight == 3
    await native.aclose()
    await compat.aclose()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["503", "500", "drop", "malformed"])
async def test_transient_failures_are_retried(
    provider: str, fault: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client(provider, server) as client:
        server.inject(fault, count=2)
        completion = await client.generate("retry me")
        assert completion.text == "Simulated reply to: retry me"
        assert completion.attempts == 3
        assert server.stats.by_path[chat_path(provider)] == 3
        assert client.stats.retries == 2
        assert client.stats.completed == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "error"),
    [("insufficient_quota", QuotaExceededError), ("401", AuthenticationError)],
)
async def test_permanent_failures_hit_the_server_once(
    provider: str, fault: str, error: type[Exception], simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client(provider, server) as client:
        server.inject(fault)
        with pytest.raises(error) as caught:
            await client.generate("never retried")
        assert server.stats.by_path[chat_path(provider)] == 1
        assert caught.value.provider == provider  # type: ignore[attr-defined]
        assert caught.value.status_code in (401, 429)  # type: ignore[attr-defined]
        assert client.stats.failed == 1
        assert client.stats.retries == 0


async def test_retries_exhausted_raise_the_last_error_with_attempts(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("openai", server) as client:
        server.inject("500", count=10)
        with pytest.raises(ServerError) as caught:
            await client.generate("doomed")
        assert caught.value.attempts == FAST_RETRY.max_attempts
        assert caught.value.elapsed is not None and caught.value.elapsed > 0
        assert caught.value.status_code == 500
        assert server.stats.by_path["/v1/chat/completions"] == FAST_RETRY.max_attempts


async def test_retry_after_is_honoured(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("openai", server) as client:
        server.inject("429", retry_after=0.4)
        completion = await client.generate("wait for it")
        assert completion.attempts == 2
        (first, _), (second, _) = server.stats.arrivals
        assert second - first >= 0.39


async def test_retry_after_pauses_the_whole_endpoint(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.01)
    async with make_client("openai", server, max_concurrent=1) as client:
        server.inject("429", retry_after=0.5)
        await asyncio.gather(*(client.generate_answer(f"q{i}") for i in range(5)))
        arrivals = [t for t, _ in server.stats.arrivals]
        refused_at = arrivals[0]
        assert all(t - refused_at >= 0.49 for t in arrivals[1:])
        assert server.stats.statuses[429] == 1


async def test_rate_limited_error_after_retries_on_ollama_native(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("ollama", server, max_attempts=1) as client:
        server.inject("429")
        with pytest.raises(RateLimitError) as caught:
            await client.generate("x")
        assert caught.value.attempts == 1


async def test_timeout_is_applied_and_frees_the_slot(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("ollama", server, timeout=0.2, max_attempts=1) as client:
        server.inject("hang")
        with pytest.raises(RequestTimeoutError) as caught:
            await client.generate("hang up")
        assert caught.value.attempts == 1
        assert client.stats.in_flight == 0
        assert await client.generate_answer("next") == "Simulated reply to: next"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancelling_in_flight_calls_leaves_no_slot_taken(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(parallel=2, latency=0.3)
    async with make_client(provider, server, max_concurrent=2) as client:
        tasks = [asyncio.create_task(client.generate_answer(f"q{i}")) for i in range(10)]
        await asyncio.sleep(0.1)
        assert client.stats.in_flight == 2
        assert client.stats.waiting == 8
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert client.stats.in_flight == 0
        assert client.stats.waiting == 0
        pair = asyncio.gather(client.generate_answer("a"), client.generate_answer("b"))
        async with asyncio.timeout(5):
            while client.stats.in_flight < 2:  # noqa: ASYNC110 (both slots free: none leaked)
                await asyncio.sleep(0.005)
        await pair


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_holds_its_slot_until_closed(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001, token_latency=0.01)
    async with make_client(provider, server, max_concurrent=1) as client:
        async with client.stream("one two three four five six") as deltas:
            first = await anext(deltas)
            assert first == "Simulated"
            other = asyncio.create_task(client.generate_answer("queued"))
            await asyncio.sleep(0.05)
            assert not other.done()
            assert client.stats.in_flight == 1
        assert await other == "Simulated reply to: queued"
        assert client.stats.in_flight == 0


async def test_stream_retries_before_the_first_delta(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("ollama", server) as client:
        server.inject("503")
        text = "".join([d async for d in client.stream("busy first")])
        assert text == "Simulated reply to: busy first"
        assert server.stats.statuses[503] == 1


async def test_invalid_requests_raise_before_sending(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("ollama", server) as client:
        with pytest.raises(ConfigurationError, match="temperature=-1"):
            await client.generate("x", temperature=-1)
        with pytest.raises(ConfigurationError, match="unknown parameter 'maxtokens'"):
            await client.generate("x", maxtokens=5)
        with pytest.raises(ValueError, match="role"):
            await client.generate([{"role": "robot", "content": "x"}])
    no_model = OllamaClient(host=server.url)
    with pytest.raises(ConfigurationError, match="LLMCLIENT_OLLAMA_MODEL"):
        await no_model.generate("x")
    await no_model.aclose()
    assert server.stats.requests == 0


async def test_not_found_is_an_invalid_request_sent_once(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    options = {"profile": ConcurrencyProfile(retry=FAST_RETRY)}
    async with OpenAIClient("sim-model", base_url=server.url + "/nowhere", **options) as client:
        with pytest.raises(InvalidRequestError, match="check the model name") as caught:
            await client.generate("x")
        assert caught.value.status_code == 404
    assert server.stats.requests == 1


async def test_tpm_is_refunded_from_reported_usage(simulated_server_factory: Factory) -> None:
    """Each request is estimated at ~100 tokens but uses ~10: without refunds 60 requests
    against tpm=1000 would take minutes."""
    server = await simulated_server_factory(latency=0.001)
    async with make_client("openai", server, tpm=1000, max_concurrent=1) as client:
        # Without refunds the bucket would hold these back for about five minutes.
        async with asyncio.timeout(60):
            await asyncio.gather(*(client.generate("a b c", max_tokens=96) for _ in range(60)))
        assert client.stats.completed == 60


async def test_rpm_limit_spaces_requests(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("ollama", server, rpm=60) as client:
        started = time.monotonic()
        await asyncio.gather(*(client.generate_answer("x") for _ in range(61)))
        assert time.monotonic() - started >= 0.9  # the 61st waited for the bucket to drip


async def test_api_key_never_logged_or_shown(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    simulated_server_factory: Factory,
) -> None:
    secret = "sk-proj-THIS-IS-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    server = await simulated_server_factory(latency=0.001)
    async with make_client("openai", server) as client:
        await client.generate("hello")
        server.inject("500")
        await client.generate("retried")
        server.inject("401")
        with pytest.raises(AuthenticationError) as caught:
            await client.generate("refused")
        assert secret not in str(caught.value)
        assert secret not in repr(client)
        assert secret not in repr(client.settings)
        assert secret not in str(client.stats)
    assert caplog.records  # DEBUG/WARNING lines were produced...
    assert secret not in caplog.text  # ...and none holds the key


async def test_stats_report_latency_and_counts(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.01)
    async with make_client("ollama", server) as client:
        await asyncio.gather(*(client.generate_answer("x") for _ in range(20)))
        stats = client.stats
        assert stats.completed == 20
        assert stats.failed == 0
        assert stats.latency_p50 is not None and stats.latency_p50 >= 0.01
        assert stats.latency_p95 is not None and stats.latency_p95 >= stats.latency_p50
        assert stats.concurrency_limit == 4
        assert stats.as_dict()["completed"] == 20


async def test_closed_client_refuses_work(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    client = make_client("ollama", server)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.generate_answer("x")


async def test_every_error_says_how_many_attempts_ran(simulated_server_factory: Factory) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with make_client("openai", server) as client:
        server.inject("500")
        server.inject("401")
        with pytest.raises(AuthenticationError) as caught:
            await client.generate("second attempt is refused")
        assert caught.value.attempts == 2


async def test_shared_endpoint_takes_the_stricter_limit(
    simulated_server_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await simulated_server_factory(parallel=16, latency=0.02)
    loose = make_client("ollama", server, max_concurrent=6)
    strict = make_client("ollama", server, max_concurrent=2)
    await loose.generate_answer("first")  # the endpoint is created with 6
    await asyncio.gather(*(c.generate_answer("q") for _ in range(20) for c in (loose, strict)))
    assert server.stats.peak_in_flight == 2
    assert "different max_concurrent" in caplog.text
    await loose.aclose()
    await strict.aclose()


def test_generate_stamps_attempts_and_latency_keeping_every_other_field() -> None:
    """The hot path's copy of a completion (not `dataclasses.replace`) keeps every field."""
    import dataclasses

    from llmclient.clients._answers import stamped as _stamped
    from llmclient.types import Completion, Token, ToolCall, Usage

    given = Completion(
        "t", "stop", Usage(1, 2), [Token("t", -0.1)], "m", 1, 0.0, "why", (ToolCall("f", {}),), {}
    )
    stamped = _stamped(given, 3, 1.5)
    assert stamped == dataclasses.replace(given, attempts=3, latency=1.5)
    assert {f.name for f in dataclasses.fields(Completion)} == {
        "text",
        "finish_reason",
        "usage",
        "tokens",
        "model",
        "attempts",
        "latency",
        "reasoning",
        "tool_calls",
        "parsed",
    }
