"""Tests of `llmclient.testing.SimulatedServer` over real HTTP, with the ollama and openai SDKs."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmclient.testing import Fault, ServerStats, SimulatedServer
from llmclient.testing.pytest_plugin import ServerFactory

BUSY = "server busy, please try again.  maximum pending requests exceeded"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there world"}]
REPLY = "Simulated reply to: hello there world"


@pytest.fixture
async def server(simulated_server_factory: ServerFactory) -> SimulatedServer:
    return await simulated_server_factory(latency=0.005)


@asynccontextmanager
async def ollama_client(
    server: SimulatedServer, **kwargs: object
) -> AsyncIterator[ollama.AsyncClient]:
    # ollama.AsyncClient has __aexit__ but no __aenter__.
    client = ollama.AsyncClient(host=server.url, **kwargs)
    try:
        yield client
    finally:
        await client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
async def oc(server: SimulatedServer) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama_client(server) as client:
        yield client


@pytest.fixture
async def ai(server: SimulatedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
    yield client
    await client.close()


async def wait_for(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll until `predicate()` holds; `within` only keeps a failure from hanging."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# --- content through the SDKs ---------------------------------------------------------------------


async def test_ollama_chat_and_logprobs(oc: ollama.AsyncClient) -> None:
    r = await oc.chat(model="sim-model", messages=USER, logprobs=True, top_logprobs=3)
    assert r.message.content == REPLY
    assert r.message.role == "assistant"
    assert r.done and r.done_reason == "stop"
    assert r.eval_count == 6 and r.prompt_eval_count == 3
    assert r.total_duration and r.total_duration > 0
    assert r.logprobs is not None and len(r.logprobs) == 6
    assert "".join(lp.token for lp in r.logprobs) == REPLY
    for lp in r.logprobs:
        tops = lp.top_logprobs
        assert tops is not None and len(tops) == 3
        assert tops[0].token == lp.token and tops[0].logprob == lp.logprob
        assert lp.logprob == max(t.logprob for t in tops) <= 0
        assert sum(math.exp(t.logprob) for t in tops) <= 1


async def test_ollama_stream_truncated_by_num_predict(oc: ollama.AsyncClient) -> None:
    stream = await oc.chat(
        model="m", messages=USER, stream=True, options={"num_predict": 4}, logprobs=True
    )
    parts = [p async for p in stream]
    assert [p.done for p in parts] == [False] * 4 + [True]
    assert "".join(p.message.content or "" for p in parts) == "Simulated reply to: hello"
    assert parts[-1].done_reason == "length" and parts[-1].eval_count == 4
    assert [[lp.token for lp in p.logprobs or []] for p in parts[:2]] == [["Simulated"], [" reply"]]


async def test_ollama_generate(oc: ollama.AsyncClient) -> None:
    r = await oc.generate(model="m", prompt="two words")
    assert r.response == "Simulated reply to: two words" and r.done_reason == "stop"
    parts = [p async for p in await oc.generate(model="m", prompt="x", stream=True)]
    assert "".join(p.response or "" for p in parts) == "Simulated reply to: x"


async def test_ollama_embed_and_listings(server: SimulatedServer, oc: ollama.AsyncClient) -> None:
    r = await oc.embed(model="sim-embed", input=["a b", "c"])
    assert len(r.embeddings) == 2 and all(len(v) == 8 for v in r.embeddings)
    assert math.isclose(sum(x * x for x in r.embeddings[0]), 1.0, rel_tol=1e-5)
    assert r.embeddings[0] != r.embeddings[1]
    assert (await oc.embed(model="sim-embed", input="a b")).embeddings[0] == r.embeddings[0]
    assert server.stats.embed_inputs == 3
    assert [m.model for m in (await oc.list()).models] == ["sim-model", "sim-embed"]
    assert [m.model for m in (await oc.ps()).models] == ["sim-model", "sim-embed"]
    async with httpx.AsyncClient(base_url=server.url) as raw:
        assert (await raw.get("/api/version")).json() == {"version": "0.12.11"}


async def test_openai_chat_logprobs_and_max_tokens(ai: openai.AsyncOpenAI) -> None:
    r = await ai.chat.completions.create(
        model="sim-model",
        messages=USER,
        logprobs=True,
        top_logprobs=2,
    )
    choice = r.choices[0]
    assert choice.message.content == REPLY and choice.finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 6, 9)
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entry = choice.logprobs.content[1]
    assert entry.token == " reply" and entry.bytes == list(b" reply")
    assert entry.top_logprobs[0].token == " reply"
    assert entry.logprob == max(t.logprob for t in entry.top_logprobs)

    for r in (
        await ai.chat.completions.create(model="m", messages=USER, max_tokens=2),
        await ai.chat.completions.create(model="m", messages=USER, max_completion_tokens=2),
    ):
        assert r.choices[0].message.content == "Simulated reply"
        assert r.choices[0].finish_reason == "length"


async def test_openai_stream_with_usage(ai: openai.AsyncOpenAI) -> None:
    stream = await ai.chat.completions.create(
        model="m",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


async def test_openai_embeddings_base64_and_float(
    ai: openai.AsyncOpenAI, oc: ollama.AsyncClient
) -> None:
    default = await ai.embeddings.create(model="sim-embed", input=["a", "b"])
    floats = await ai.embeddings.create(
        model="sim-embed", input=["a", "b"], encoding_format="float"
    )
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert [d.index for d in default.data] == [0, 1]
    assert default.usage.prompt_tokens == 2
    assert floats.data[0].embedding == (await oc.embed(model="e", input="a")).embeddings[0]


async def test_openai_base64_is_little_endian_float32(server: SimulatedServer) -> None:
    async with httpx.AsyncClient(base_url=server.openai_base_url) as raw:
        body = {"model": "e", "input": "a", "encoding_format": "base64"}
        b64 = (await raw.post("/embeddings", json=body)).json()["data"][0]["embedding"]
        body["encoding_format"] = "float"
        floats = (await raw.post("/embeddings", json=body)).json()["data"][0]["embedding"]
    assert list(struct.unpack("<8f", base64.b64decode(b64))) == floats


async def test_openai_models(ai: openai.AsyncOpenAI) -> None:
    assert [m.id async for m in ai.models.list()] == ["sim-model", "sim-embed"]
    assert (await ai.models.retrieve("llama3:8b")).id == "llama3:8b"


# --- request errors -------------------------------------------------------------------------------


async def test_bad_requests_and_unknown_paths(server: SimulatedServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as raw:
        r = await raw.post("/api/chat", json={"messages": USER})
        assert (r.status_code, r.json()) == (400, {"error": "model is required"})
        r = await raw.post("/api/chat", content=b"{not json")
        assert r.status_code == 400 and isinstance(r.json()["error"], str)
        r = await raw.post("/v1/chat/completions", content=b"[1]")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = await raw.get("/api/nothing")
        assert r.status_code == 404 and isinstance(r.json()["error"], str)
        r = await raw.get("/v1/nothing")
        assert r.status_code == 404 and set(r.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
    assert server.stats.statuses == {400: 3, 404: 2}
    assert server.stats.completed == 0


# --- slots and queue ------------------------------------------------------------------------------


async def test_slots_limit_concurrency(simulated_server_factory: ServerFactory) -> None:
    # 300 ms each: the 20 arrive while the first two are served, even on a loaded machine
    # (at 100 ms, two of them sometimes still connected after the first round had ended)
    server = await simulated_server_factory(parallel=2, latency=0.3)
    async with ollama_client(server) as oc:
        await oc.list()  # warm up
        start = time.monotonic()
        await asyncio.gather(*(oc.chat(model="m", messages=USER) for _ in range(20)))
        elapsed = time.monotonic() - start
    assert server.stats.peak_in_flight == 2  # never more than the slots, and both used
    assert server.stats.peak_waiting >= 16
    assert server.stats.by_path["/api/chat"] == 20
    assert server.stats.completed == 21  # the warm-up and the 20 chats
    assert elapsed >= 2.9  # at best 10 rounds of 300 ms: the waiting ones really waited
    assert (server.stats.in_flight, server.stats.waiting) == (0, 0)


async def test_token_latency_adds_service_time(simulated_server_factory: ServerFactory) -> None:
    server = await simulated_server_factory(latency=0.0, token_latency=0.005)
    async with ollama_client(server) as oc:
        start = time.monotonic()
        await oc.chat(model="m", messages=USER)  # 6 tokens
        assert time.monotonic() - start >= 0.03


async def test_default_is_the_warm_model_unbounded_wait(
    simulated_server_factory: ServerFactory,
) -> None:
    # Ollama >= 0.11.5 on a loaded model: requests beyond the slots wait, none is refused
    server = await simulated_server_factory(parallel=1, latency=0.01)
    async with ollama_client(server) as oc:
        results = await asyncio.gather(*(oc.chat(model="m", messages=USER) for _ in range(40)))
    assert all(r.message.content == REPLY for r in results)
    assert server.stats.statuses == {200: 40} and server.stats.peak_in_flight == 1
    assert server.stats.peak_waiting > 1  # they queued; how many at once depends on arrival


async def test_max_queue_answers_ollama_busy(simulated_server_factory: ServerFactory) -> None:
    server = await simulated_server_factory(parallel=1, max_queue=1, latency=0.05)
    async with ollama_client(server) as oc:
        results = await asyncio.gather(
            *(oc.chat(model="m", messages=USER) for _ in range(4)), return_exceptions=True
        )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 2
    for err in errors:
        assert isinstance(err, ollama.ResponseError)
        assert (err.status_code, err.error) == (503, BUSY)
    assert server.stats.statuses == {200: 2, 503: 2} and server.stats.peak_waiting == 1

    async with httpx.AsyncClient(base_url=server.url) as raw:
        first = asyncio.create_task(raw.post("/api/chat", json={"model": "m", "stream": False}))
        second = asyncio.create_task(raw.post("/api/chat", json={"model": "m", "stream": False}))
        await wait_for(lambda: server.stats.waiting == 1)
        busy = await raw.post("/v1/chat/completions", json={"model": "m"})
        await asyncio.gather(first, second)
    assert busy.status_code == 503 and busy.json()["error"]["message"] == BUSY


async def test_waiting_client_that_leaves_frees_its_place(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=1, latency=0.05)
    async with httpx.AsyncClient(base_url=server.url) as raw:
        body = {"model": "m", "stream": False}
        first = asyncio.create_task(raw.post("/api/chat", json=body))
        await wait_for(lambda: server.stats.in_flight == 1)
        with pytest.raises(httpx.TimeoutException):
            await raw.post("/api/chat", json=body, timeout=0.01)
        await wait_for(lambda: server.stats.waiting == 0)
        assert (await first).status_code == 200
        assert (await raw.post("/api/chat", json=body)).status_code == 200
    assert server.stats.disconnected == 1


async def test_many_concurrent_connections(simulated_server_factory: ServerFactory) -> None:
    server = await simulated_server_factory(parallel=64, latency=0.01)
    client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
    async with client:
        results = await asyncio.gather(
            *(client.chat.completions.create(model="m", messages=USER) for _ in range(250))
        )
    assert all(r.choices[0].message.content == REPLY for r in results)
    assert server.stats.completed == 250 and server.stats.peak_in_flight == 64


# --- faults ---------------------------------------------------------------------------------------


async def test_openai_status_faults(server: SimulatedServer, ai: openai.AsyncOpenAI) -> None:
    server.inject(Fault.RATE_LIMIT, retry_after=2)
    server.inject("insufficient_quota")
    server.inject("401")
    server.inject("500")
    server.inject("503")

    async def call() -> object:
        return await ai.chat.completions.create(model="m", messages=USER)

    with pytest.raises(openai.RateLimitError) as rate:
        await call()
    assert rate.value.code == "rate_limit_exceeded"
    headers = rate.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as quota:
        await call()
    assert quota.value.code == quota.value.type == "insufficient_quota"
    assert quota.value.body == {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    with pytest.raises(openai.AuthenticationError) as auth:
        await call()
    assert (auth.value.type, auth.value.code) == ("invalid_request_error", "invalid_api_key")
    with pytest.raises(openai.InternalServerError) as internal:
        await call()
    assert internal.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as busy:
        await call()
    assert busy.value.status_code == 503 and busy.value.message.endswith(BUSY)
    await call()  # faults used up
    assert server.stats.statuses == {429: 2, 401: 1, 500: 1, 503: 1, 200: 1}


async def test_ollama_status_faults(server: SimulatedServer, oc: ollama.AsyncClient) -> None:
    for fault, status in (("503", 503), ("500", 500), ("429", 429), ("401", 401)):
        server.inject(fault)
        with pytest.raises(ollama.ResponseError) as err:
            await oc.chat(model="m", messages=USER)
        assert err.value.status_code == status
        if fault == "503":
            assert err.value.error == BUSY


async def test_drop_fault(server: SimulatedServer, ai: openai.AsyncOpenAI) -> None:
    server.inject(Fault.DROP, count=2)
    with pytest.raises(openai.APIConnectionError):
        await ai.chat.completions.create(model="m", messages=USER)
    async with ollama_client(server) as oc:
        with pytest.raises(httpx.RemoteProtocolError):
            await oc.chat(model="m", messages=USER)
        assert (await oc.chat(model="m", messages=USER)).message.content == REPLY
    assert server.stats.statuses == {"drop": 2, 200: 1}


async def test_malformed_fault(server: SimulatedServer, ai: openai.AsyncOpenAI) -> None:
    server.inject("malformed", count=2)
    with pytest.raises(json.JSONDecodeError):
        await ai.chat.completions.create(model="m", messages=USER)
    async with ollama_client(server) as oc:
        with pytest.raises(json.JSONDecodeError):
            await oc.chat(model="m", messages=USER)
    assert server.stats.statuses == {200: 2} and server.stats.completed == 0


async def test_hang_fault_holds_no_slot(simulated_server_factory: ServerFactory) -> None:
    server = await simulated_server_factory(parallel=1, latency=0.005)
    server.inject("hang")
    async with ollama_client(server, timeout=0.1) as oc:
        hung = asyncio.create_task(oc.chat(model="m", messages=USER))
        await wait_for(lambda: server.stats.statuses["hang"] == 1)
        # The single slot stays free for others while the request hangs.
        assert (await oc.chat(model="m", messages=USER)).message.content == REPLY
        with pytest.raises(httpx.ReadTimeout):
            await hung
    await wait_for(lambda: server.stats.disconnected == 1)
    assert (server.stats.in_flight, server.stats.waiting) == (0, 0)


async def test_inject_path_filter_and_order(
    server: SimulatedServer, ai: openai.AsyncOpenAI
) -> None:
    server.inject("500", path="/v1/embeddings")
    server.inject("401", path="/v1/chat")
    await ai.models.list()
    with pytest.raises(openai.AuthenticationError):
        await ai.chat.completions.create(model="m", messages=USER)
    with pytest.raises(openai.InternalServerError):
        await ai.embeddings.create(model="e", input="x")
    await ai.embeddings.create(model="e", input="x")
    with pytest.raises(ValueError):
        server.inject("teapot")


async def test_fault_rates_are_seeded(simulated_server_factory: ServerFactory) -> None:
    async def run(seed: int) -> list[int]:
        server = await simulated_server_factory(
            latency=0.0, fault_rates={"500": 0.3, "429": 0.2}, seed=seed
        )
        async with httpx.AsyncClient(base_url=server.url) as raw:
            await raw.get("/api/tags")  # listings are never faulted at random
            body = {"model": "m", "stream": False}
            return [(await raw.post("/api/chat", json=body)).status_code for _ in range(40)]

    first = await run(7)
    assert first == await run(7)
    assert {200, 429, 500} == set(first)
    with pytest.raises(ValueError):
        SimulatedServer(fault_rates={"500": 0.8, "drop": 0.5})


# --- rate limit -----------------------------------------------------------------------------------


async def test_rpm_limit(simulated_server_factory: ServerFactory) -> None:
    server = await simulated_server_factory(rpm=3, latency=0.0)
    client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
    async with client:
        for remaining in ("2", "1", "0"):
            raw = await client.chat.completions.with_raw_response.create(model="m", messages=USER)
            assert raw.headers["x-ratelimit-limit-requests"] == "3"
            assert raw.headers["x-ratelimit-remaining-requests"] == remaining
            assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        await client.models.list()  # listings do not count
        with pytest.raises(openai.RateLimitError) as err:
            await client.chat.completions.create(model="m", messages=USER)
    assert err.value.code == "rate_limit_exceeded" and err.value.type == "requests"
    assert err.value.response.headers["retry-after"] == "60"
    assert err.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    async with ollama_client(server) as oc:
        with pytest.raises(ollama.ResponseError) as native:
            await oc.embed(model="e", input="x")
    assert native.value.status_code == 429 and "Rate limit reached" in native.value.error


# --- disconnects and shutdown ---------------------------------------------------------------------


async def test_client_leaving_a_stream_frees_the_slot(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=1, latency=0.0, token_latency=0.02)
    async with ollama_client(server) as oc:
        stream = await oc.chat(model="m", messages=USER, stream=True)
        first = await anext(stream)
        assert first.message.content == "Simulated"
        assert server.stats.in_flight == 1
        assert isinstance(stream, AsyncGenerator)
        await stream.aclose()
        await wait_for(lambda: server.stats.in_flight == 0)
        assert server.stats.disconnected == 1 and server.stats.completed == 0
        assert (await oc.chat(model="m", messages=USER)).message.content == REPLY


async def test_stop_with_hung_request_and_idle_connections(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory()
    async with httpx.AsyncClient(base_url=server.url) as raw:
        assert (
            await raw.get("/api/tags")
        ).status_code == 200  # leaves an idle keep-alive connection
        server.inject("hang")
        hung = asyncio.create_task(raw.post("/api/chat", json={"model": "m"}))
        await wait_for(lambda: server.stats.statuses["hang"] == 1)
        # neither the hung request nor the idle connection would ever end by itself: stop()
        # returns at all only if it cuts them (the timeout only keeps a failure from hanging)
        async with asyncio.timeout(10):
            await server.stop()
        with pytest.raises(httpx.TransportError):
            await hung
    await server.stop()  # idempotent


# --- stats and fixtures ---------------------------------------------------------------------------


async def test_stats_snapshot_and_reset(
    simulated_server: SimulatedServer, simulated_server_factory: ServerFactory
) -> None:
    assert isinstance(simulated_server.stats, ServerStats)
    async with httpx.AsyncClient(base_url=simulated_server.url) as raw:
        await raw.post("/api/embed", json={"model": "e", "input": ["a", "b"]})
        snap = simulated_server.stats.snapshot()
        await raw.get("/api/tags")
    live = simulated_server.stats
    assert (snap.requests, live.requests) == (1, 2)
    assert snap.by_path == {"/api/embed": 1} and snap.embed_inputs == 2
    assert [path for _, path in live.arrivals] == ["/api/embed", "/api/tags"]
    simulated_server.reset_stats()
    assert simulated_server.stats is live and live.requests == 0 and not live.arrivals

    other = await simulated_server_factory(parallel=1)
    assert other.url != simulated_server.url
    assert other.openai_base_url == other.url + "/v1"


async def test_url_needs_a_started_server() -> None:
    with pytest.raises(RuntimeError):
        _ = SimulatedServer().url


async def test_context_manager() -> None:
    async with SimulatedServer(latency=0.0) as server, ollama_client(server) as oc:
        assert (await oc.chat(model="m", messages=USER)).done
