"""What each misbehaving-server fault sends, and what the raw `openai` and `ollama` SDKs make of it.

These tests document the SDKs' own behaviour, not llmclient's: the engineers who turn each of
these answers into an llmclient error start from what is asserted here. Every fault is shown on
both protocols, for a whole and a streamed chat and for embeddings.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator

import httpx
import httpx2
import ollama
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from llmclient.testing import Fault, SimulatedServer
from llmclient.testing.pytest_plugin import ServerFactory

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there world"}]
OPENAI_KEY = "sk-test-secret-0001"
OLLAMA_KEY = "ollama-secret-0002"
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
RUN_ERROR = "an error was encountered while running the model: unexpected EOF"
CHAT = {"model": "m", "messages": USER}


@pytest.fixture
async def server(simulated_server_factory: ServerFactory) -> SimulatedServer:
    return await simulated_server_factory(latency=0.0)


@pytest.fixture
async def ai(server: SimulatedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def oc(server: SimulatedServer) -> AsyncIterator[ollama.AsyncClient]:
    # As OLLAMA_API_KEY would: the SDK sends it as a bearer token.
    client = ollama.AsyncClient(host=server.url, headers={"Authorization": f"Bearer {OLLAMA_KEY}"})
    yield client
    await client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
async def raw(server: SimulatedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield client


async def openai_stream(ai: openai.AsyncOpenAI) -> list[ChatCompletionChunk]:
    stream = await ai.chat.completions.create(model="m", messages=USER, stream=True)
    return [chunk async for chunk in stream]


async def ollama_stream(oc: ollama.AsyncClient) -> list[ollama.ChatResponse]:
    return [part async for part in await oc.chat(model="m", messages=USER, stream=True)]


def ndjson_lines(body: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in body.splitlines()]


def sse_data(body: bytes) -> list[str]:
    return [event.removeprefix("data: ") for event in body.decode().split("\n\n") if event]


# --- html -----------------------------------------------------------------------------------------


async def test_html(
    server: SimulatedServer, ai: openai.AsyncOpenAI, oc: ollama.AsyncClient, raw: httpx.AsyncClient
) -> None:
    server.inject(Fault.HTML, count=2)
    for path in ("/v1/chat/completions", "/api/chat"):
        r = await raw.post(path, json=CHAT)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.text.startswith("<!DOCTYPE html>") and "Sign in" in r.text

    # openai: a whole answer that is not JSON comes back as the body text, no error at all
    server.inject("html", count=3)
    page = await ai.chat.completions.create(model="m", messages=USER)
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")
    assert await openai_stream(ai) == []  # no `data:` line: an empty stream, no error
    with pytest.raises(AttributeError, match="'str' object has no attribute 'data'"):
        await ai.embeddings.create(model="e", input="a")  # the SDK's base64 decoding step

    # ollama: the JSON decoder fails
    server.inject("html", count=3)
    for call in (
        oc.chat(model="m", messages=USER),
        ollama_stream(oc),
        oc.embed(model="e", input="a"),
    ):
        with pytest.raises(json.JSONDecodeError, match="Expecting value: line 1 column 1"):
            await call
    assert server.stats.statuses == {200: 8} and server.stats.completed == 0


# --- json_array -----------------------------------------------------------------------------------


async def test_json_array(
    server: SimulatedServer, ai: openai.AsyncOpenAI, oc: ollama.AsyncClient, raw: httpx.AsyncClient
) -> None:
    server.inject(Fault.JSON_ARRAY, count=2)
    for path in ("/v1/embeddings", "/api/embed"):
        r = await raw.post(path, json={"model": "e", "input": "a"})
        assert (r.status_code, r.headers["content-type"], r.content) == (
            200,
            "application/json; charset=utf-8",
            b"[]",
        )

    server.inject("json_array", count=3)
    array: object = await ai.chat.completions.create(model="m", messages=USER)
    assert array == []  # typed ChatCompletion, but the SDK returns the decoded list as it is
    assert await openai_stream(ai) == []
    with pytest.raises(AttributeError, match="'list' object has no attribute 'data'"):
        await ai.embeddings.create(model="e", input="a")

    server.inject("json_array", count=3)
    with pytest.raises(TypeError, match="argument after \\*\\* must be a mapping, not list"):
        await oc.chat(model="m", messages=USER)
    with pytest.raises(AttributeError, match="'list' object has no attribute 'get'"):
        await ollama_stream(oc)
    with pytest.raises(TypeError, match="must be a mapping, not list"):
        await oc.embed(model="e", input="a")


# --- missing_fields -------------------------------------------------------------------------------


async def test_missing_fields_on_the_wire(server: SimulatedServer, raw: httpx.AsyncClient) -> None:
    server.inject("missing_fields", count=7)
    whole = (await raw.post("/v1/chat/completions", json=CHAT)).json()
    assert "choices" not in whole and whole["object"] == "chat.completion"
    streamed = sse_data(
        (await raw.post("/v1/chat/completions", json={**CHAT, "stream": True})).content
    )
    assert streamed[-1] == "[DONE]"  # framing and end marker kept, every chunk lacks `choices`
    assert all("choices" not in json.loads(d) for d in streamed[:-1])
    assert (
        "data" not in (await raw.post("/v1/embeddings", json={"model": "e", "input": "a"})).json()
    )
    whole = (await raw.post("/api/chat", json={**CHAT, "stream": False})).json()
    assert "message" not in whole and whole["done"] is True
    lines = ndjson_lines((await raw.post("/api/chat", json=CHAT)).content)
    assert lines[-1]["done"] is True and all("message" not in line for line in lines)
    body = (
        await raw.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
    ).json()
    assert "response" not in body and body["done"] is True
    assert (
        "embeddings" not in (await raw.post("/api/embed", json={"model": "e", "input": "a"})).json()
    )


async def test_missing_fields_through_the_sdks(
    server: SimulatedServer, ai: openai.AsyncOpenAI, oc: ollama.AsyncClient
) -> None:
    server.inject(Fault.MISSING_FIELDS, count=3)
    # openai builds its models without validation: the field reads as None
    completion = await ai.chat.completions.create(model="m", messages=USER)
    assert isinstance(completion, ChatCompletion) and completion.choices is None
    chunks = await openai_stream(ai)
    assert len(chunks) == 7 and all(c.choices is None for c in chunks)  # 6 tokens + finishing
    with pytest.raises(ValueError, match="No embedding data received"):
        await ai.embeddings.create(model="e", input="a")

    # ollama validates: a required field missing is a pydantic ValidationError...
    server.inject(Fault.MISSING_FIELDS, count=4)
    for call in (oc.chat(model="m", messages=USER), ollama_stream(oc)):
        with pytest.raises(pydantic.ValidationError, match="message\n  Field required"):
            await call
    with pytest.raises(pydantic.ValidationError, match="embeddings\n  Field required"):
        await oc.embed(model="e", input="a")
    # ...but /api/generate's `response` is optional: a reply without any text, and done
    generated = await oc.generate(model="m", prompt="x")
    assert isinstance(generated, ollama.GenerateResponse)
    assert generated.response is None and generated.done is True


# --- corrupt_gzip ---------------------------------------------------------------------------------


async def test_corrupt_gzip(
    server: SimulatedServer, ai: openai.AsyncOpenAI, oc: ollama.AsyncClient, raw: httpx.AsyncClient
) -> None:
    server.inject(Fault.CORRUPT_GZIP, count=2)
    for body in (CHAT, {**CHAT, "stream": True}):
        async with raw.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
            data = b"".join([chunk async for chunk in r.aiter_raw()])
        assert data.startswith(b"\x1f\x8b")
        with pytest.raises(zlib.error, match="invalid block type"):
            zlib.decompress(data, zlib.MAX_WBITS | 16)

    # openai wraps the transport's decoding error as a connection error (some earlier 3.x
    # releases let httpx2's own error through while reading a stream)
    server.inject("corrupt_gzip", count=3)
    for call in (
        ai.chat.completions.create(model="m", messages=USER),
        openai_stream(ai),
        ai.embeddings.create(model="e", input="a"),
    ):
        with pytest.raises((openai.APIConnectionError, httpx2.DecodingError)) as err:
            await call
        raised = err.value
        cause = raised.__cause__ if isinstance(raised, openai.APIConnectionError) else raised
        assert isinstance(cause, httpx2.DecodingError)

    # ollama lets httpx's error through
    server.inject("corrupt_gzip", count=3)
    for native in (
        oc.chat(model="m", messages=USER),
        ollama_stream(oc),
        oc.embed(model="e", input="a"),
    ):
        with pytest.raises(httpx.DecodingError, match="invalid block type"):
            await native


# --- truncated_stream -----------------------------------------------------------------------------


async def test_truncated_stream_on_the_wire(
    server: SimulatedServer, raw: httpx.AsyncClient
) -> None:
    server.inject(Fault.TRUNCATED_STREAM, count=3)
    # a complete HTTP message (the body ends cleanly) without the protocol's end
    events = sse_data(
        (await raw.post("/v1/chat/completions", json={**CHAT, "stream": True})).content
    )
    assert len(events) == 4 and "[DONE]" not in events  # the role chunk and 3 of 6 tokens
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)
    lines = ndjson_lines((await raw.post("/api/chat", json=CHAT)).content)
    assert len(lines) == 3 and not any(line["done"] for line in lines)
    # a whole answer is cut mid-body: the head announces more than is sent, then the close
    with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection without sending"):
        await raw.post("/api/embed", json={"model": "e", "input": "a"})
    assert server.stats.statuses == {200: 3} and server.stats.completed == 0


async def test_truncated_stream_through_the_sdks(
    server: SimulatedServer, ai: openai.AsyncOpenAI, oc: ollama.AsyncClient
) -> None:
    server.inject("truncated_stream", count=3)
    # openai: the stream just ends, with no finish_reason and no error
    chunks = await openai_stream(ai)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Simulated reply to:"
    assert [c.choices[0].finish_reason for c in chunks] == [None] * 4
    for call in (
        ai.chat.completions.create(model="m", messages=USER),
        ai.embeddings.create(model="e", input="a"),
    ):
        with pytest.raises(openai.APIConnectionError, match=r"^Connection error\.$") as err:
            await call
        assert isinstance(err.value.__cause__, httpx2.RemoteProtocolError)

    # ollama: the same, every part has done=False
    server.inject("truncated_stream", count=3)
    parts = await ollama_stream(oc)
    assert [p.done for p in parts] == [False] * 3 and parts[-1].done_reason is None
    for whole in (oc.chat(model="m", messages=USER), oc.embed(model="e", input="a")):
        with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection without"):
            await whole


# --- stream_error ---------------------------------------------------------------------------------


async def test_stream_error_on_the_wire(server: SimulatedServer, raw: httpx.AsyncClient) -> None:
    server.inject(Fault.STREAM_ERROR, count=4)
    events = sse_data(
        (await raw.post("/v1/chat/completions", json={**CHAT, "stream": True})).content
    )
    assert len(events) == 5 and json.loads(events[-1]) == {
        "error": {"message": SERVER_ERROR, "type": "server_error", "param": None, "code": None}
    }
    lines = ndjson_lines((await raw.post("/api/chat", json=CHAT)).content)
    assert len(lines) == 4 and lines[-1] == {"error": RUN_ERROR}
    # a whole answer: the same error as a 500
    r = await raw.post("/api/chat", json={**CHAT, "stream": False})
    assert (r.status_code, r.json()) == (500, {"error": RUN_ERROR})
    r = await raw.post("/v1/embeddings", json={"model": "e", "input": "a"})
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"


async def test_stream_error_through_the_sdks(
    server: SimulatedServer, ai: openai.AsyncOpenAI, oc: ollama.AsyncClient
) -> None:
    server.inject("stream_error", count=3)
    received: list[ChatCompletionChunk] = []
    stream = await ai.chat.completions.create(model="m", messages=USER, stream=True)
    with pytest.raises(openai.APIError) as err:
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 4  # the deltas before the error event arrive first
    # a plain APIError, not an APIStatusError: no status_code (the stream's status was 200)
    assert type(err.value) is openai.APIError and err.value.message == SERVER_ERROR
    assert err.value.type == "server_error" and err.value.code is None
    assert err.value.body == {
        "message": SERVER_ERROR,
        "type": "server_error",
        "param": None,
        "code": None,
    }
    for call in (
        ai.chat.completions.create(model="m", messages=USER),
        ai.embeddings.create(model="e", input="a"),
    ):
        with pytest.raises(openai.InternalServerError) as whole:
            await call
        assert whole.value.status_code == 500 and whole.value.type == "server_error"

    server.inject("stream_error", count=3)
    parts: list[ollama.ChatResponse] = []
    with pytest.raises(ollama.ResponseError) as native:
        async for part in await oc.chat(model="m", messages=USER, stream=True):
            parts.append(part)
    assert len(parts) == 3
    assert (native.value.error, native.value.status_code) == (RUN_ERROR, -1)  # no status: -1
    for whole_call in (oc.chat(model="m", messages=USER), oc.embed(model="e", input="a")):
        with pytest.raises(ollama.ResponseError) as whole_native:
            await whole_call
        assert (whole_native.value.error, whole_native.value.status_code) == (RUN_ERROR, 500)


# --- echo_key -------------------------------------------------------------------------------------


async def test_echo_key(
    server: SimulatedServer, ai: openai.AsyncOpenAI, oc: ollama.AsyncClient, raw: httpx.AsyncClient
) -> None:
    server.inject(Fault.ECHO_KEY, count=3)
    for call in (
        ai.chat.completions.create(model="m", messages=USER),
        openai_stream(ai),
        ai.embeddings.create(model="e", input="a"),
    ):
        with pytest.raises(openai.AuthenticationError) as err:
            await call
        assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
        assert f"Incorrect API key provided: {OPENAI_KEY}." in str(err.value)  # the secret, echoed
        assert isinstance(err.value.body, dict) and OPENAI_KEY in err.value.body["message"]

    server.inject("echo_key", count=3)
    for native in (
        oc.chat(model="m", messages=USER),
        ollama_stream(oc),
        oc.embed(model="e", input="a"),
    ):
        with pytest.raises(ollama.ResponseError) as native_err:
            await native
        assert native_err.value.status_code == 401
        assert native_err.value.error == f"unauthorized: {OLLAMA_KEY}"
        assert OLLAMA_KEY in str(native_err.value)

    server.inject("echo_key")  # no Authorization header: nothing to echo
    r = await raw.post("/api/chat", json=CHAT)
    assert (r.status_code, r.json()) == (401, {"error": "unauthorized: "})


async def test_any_fault_can_echo_the_authorization_header(
    server: SimulatedServer, ai: openai.AsyncOpenAI, oc: ollama.AsyncClient, raw: httpx.AsyncClient
) -> None:
    shown = f"(Authorization: Bearer {OPENAI_KEY})"
    server.inject("500", echo_key=True)
    with pytest.raises(openai.InternalServerError) as err:
        await ai.chat.completions.create(model="m", messages=USER)
    assert isinstance(err.value.body, dict) and err.value.body["message"].endswith(shown)
    server.inject("stream_error", echo_key=True)
    with pytest.raises(openai.APIError) as mid_stream:
        await openai_stream(ai)
    assert mid_stream.value.message.endswith(shown)

    server.inject("429", echo_key=True)
    with pytest.raises(ollama.ResponseError) as native:
        await oc.chat(model="m", messages=USER)
    assert native.value.error.endswith(f"(Authorization: Bearer {OLLAMA_KEY})")
    server.inject("html", echo_key=True)
    page = await raw.post("/api/chat", json=CHAT, headers={"Authorization": "Bearer k-1"})
    assert "<p>Authorization: Bearer k-1</p>" in page.text
    server.inject("500")  # echoes nothing unless asked
    assert "Authorization" not in (await raw.post("/api/chat", json=CHAT)).text


# --- 429 on the Ollama native path ----------------------------------------------------------------


async def test_rate_limit_on_the_ollama_native_path(
    server: SimulatedServer, oc: ollama.AsyncClient, raw: httpx.AsyncClient
) -> None:
    server.inject(Fault.RATE_LIMIT, retry_after=3, count=2)
    for path, body in (("/api/chat", CHAT), ("/api/embed", {"model": "e", "input": "a"})):
        r = await raw.post(path, json=body)
        assert r.status_code == 429
        assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("3", "3000")
        assert r.json() == {
            "error": "Rate limit reached for requests per min (RPM). Please try again in 3s."
        }

    # the SDK keeps the status and the message but drops the headers: no retry-after to read
    server.inject("429")
    with pytest.raises(ollama.ResponseError) as err:
        await oc.chat(model="m", messages=USER)
    assert err.value.status_code == 429 and err.value.error.startswith("Rate limit reached")
    assert not hasattr(err.value, "response")


# --- every fault, by rate -------------------------------------------------------------------------


async def test_new_faults_by_rate_on_every_inference_path(
    simulated_server_factory: ServerFactory,
) -> None:
    kinds = ("html", "json_array", "missing_fields", "corrupt_gzip", "stream_error", "echo_key")
    server = await simulated_server_factory(
        latency=0.0, fault_rates={kind: 1 / len(kinds) for kind in kinds}, seed=1
    )
    paths = ("/api/chat", "/api/generate", "/api/embed", "/v1/chat/completions", "/v1/embeddings")
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path in paths * 6:
            async with client.stream("POST", path, json={"model": "m", "input": "x"}) as r:
                async for _ in r.aiter_raw():  # as sent: corrupt gzip included
                    pass
    assert server.stats.completed == 0 and server.stats.requests == 30
    assert set(server.stats.statuses) <= {200, 401, 500}
