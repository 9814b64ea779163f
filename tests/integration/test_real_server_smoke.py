"""Smoke tests of the real llama.cpp server with the raw ``openai`` SDK (no llmclient code).

They pin down what the integration tier can rely on: usage and finish_reason, real top
logprobs, streaming deltas, embeddings of the model width, and a load probe (``/slots``,
``/metrics``) that sees the 2 slots fill up and the queue behind them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.integration import real_server
from tests.integration.helpers import (
    LLAMA_PARALLEL,
    queue_waiting,
    server_slots,
    slots_processing,
)

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello in three words."}]


@pytest.fixture
async def client(llama_server: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=llama_server.base_url, api_key="sk-local", max_retries=0, timeout=60
    ) as c:
        yield c


async def test_models_reports_the_alias(client: openai.AsyncOpenAI, llama_server: Any) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == [llama_server.model] == [real_server.MODEL_ALIAS]


async def test_chat_completion_has_usage_and_finish_reason(
    client: openai.AsyncOpenAI, llama_server: Any
) -> None:
    resp = await client.chat.completions.create(
        model=llama_server.model, messages=MESSAGES, max_tokens=8, temperature=0
    )
    choice = resp.choices[0]
    assert choice.finish_reason in ("length", "stop")
    assert isinstance(choice.message.content, str)
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert 0 < resp.usage.completion_tokens <= 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


async def test_same_prompt_greedy_is_deterministic(
    client: openai.AsyncOpenAI, llama_server: Any
) -> None:
    async def once() -> str | None:
        resp = await client.chat.completions.create(
            model=llama_server.model, messages=MESSAGES, max_tokens=8, temperature=0
        )
        return resp.choices[0].message.content

    assert await once() == await once()


async def test_top_logprobs_are_real_probabilities(
    client: openai.AsyncOpenAI, llama_server: Any
) -> None:
    resp = await client.chat.completions.create(
        model=llama_server.model,
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    logprobs = resp.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert resp.usage is not None
    assert len(logprobs.content) == resp.usage.completion_tokens
    for tok in logprobs.content:
        assert len(tok.top_logprobs) == 5
        probs = [math.exp(t.logprob) for t in tok.top_logprobs]
        assert all(0.0 < p <= 1.0 for p in probs)
        assert probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1.0 + 1e-6
        # greedy decoding picks the most likely token
        assert tok.logprob == pytest.approx(tok.top_logprobs[0].logprob, abs=1e-4)


async def test_streaming_yields_deltas_then_finish_and_usage(
    client: openai.AsyncOpenAI, llama_server: Any
) -> None:
    stream = await client.chat.completions.create(
        model=llama_server.model,
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas: list[str] = []
    finish: list[str] = []
    usage = None
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            if choice.finish_reason:
                finish.append(choice.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage
    assert len(deltas) >= 2
    assert finish in (["length"], ["stop"])
    assert usage is not None and 0 < usage.completion_tokens <= 8


async def test_embeddings_have_model_width(llama_embed_server: Any) -> None:
    async with openai.AsyncOpenAI(
        base_url=llama_embed_server.base_url, api_key="sk-local", max_retries=0, timeout=60
    ) as client:
        resp = await client.embeddings.create(
            model=llama_embed_server.model, input=["hello world", "a different sentence"]
        )
    assert [d.index for d in resp.data] == [0, 1]
    a, b = (d.embedding for d in resp.data)
    assert len(a) == len(b) == real_server.N_EMBD
    assert all(math.isfinite(x) for x in a + b)
    assert a != b
    assert resp.usage.prompt_tokens > 0


async def test_slots_endpoint_shows_idle_slots(llama_server: Any) -> None:
    slots = await server_slots(llama_server.url)
    assert len(slots) == LLAMA_PARALLEL
    assert [s["is_processing"] for s in slots] == [False] * LLAMA_PARALLEL
    assert {s["n_ctx"] for s in slots} == {llama_server.ctx}
    assert await slots_processing(llama_server.url) == 0
    assert await queue_waiting(llama_server.base_url) == 0


async def test_metrics_see_two_slots_busy_and_the_rest_queued(
    client: openai.AsyncOpenAI, llama_server: Any
) -> None:
    n_requests = 2 * LLAMA_PARALLEL

    async def one() -> None:
        await client.chat.completions.create(
            model=llama_server.model,
            messages=MESSAGES,
            max_tokens=64,
            extra_body={"ignore_eos": True},
        )

    tasks = [asyncio.create_task(one()) for _ in range(n_requests)]
    peak_processing = peak_waiting = 0
    while not all(t.done() for t in tasks):
        peak_processing = max(peak_processing, await slots_processing(llama_server.url))
        peak_waiting = max(peak_waiting, await queue_waiting(llama_server.url))
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)

    assert peak_processing == LLAMA_PARALLEL
    assert peak_waiting >= 1
    assert await slots_processing(llama_server.url) == 0
    assert await queue_waiting(llama_server.url) == 0
