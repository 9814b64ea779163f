"""Tool calls, structured output and images through the real SDKs against the simulator."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from llmclient import (
    BaseLLMClient,
    ConcurrencyProfile,
    ConfigurationError,
    MalformedResponseError,
    Message,
    OllamaClient,
    OpenAIClient,
    Tool,
    ToolCall,
    UnsupportedFeatureError,
    image,
    text,
)
from llmclient.testing import SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]
PROVIDERS = ["ollama", "openai"]
WEATHER = Tool(
    "get_weather",
    "The weather in a city now",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city"],
    },
)
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


def make_client(provider: str, server: SimulatedServer, **options: Any) -> BaseLLMClient:
    options.setdefault("profile", ConcurrencyProfile(name="test", retry=FAST_RETRY))
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, **options)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, **options)


def last_body(server: SimulatedServer) -> dict[str, Any]:
    body = server.stats.bodies[-1]
    assert isinstance(body, dict)
    return body


# ------------------------------------------------------------------------------ tool calls
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_tool_call_comes_back_parsed_and_the_tools_go_in_the_providers_form(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with make_client(provider, server) as client:
        completion = await client.generate("Weather in Paris?", tools=[WEATHER, TIME])
    assert completion.text == ""
    [call] = completion.tool_calls
    assert call.name == "get_weather"
    assert call.arguments == {"city": "Weather in Paris?", "unit": "celsius", "days": 1}
    body = last_body(server)
    function = body["tools"][0]["function"]
    assert body["tools"][0]["type"] == "function"
    assert (function["name"], function["description"]) == ("get_weather", WEATHER.description)
    if provider == "openai":
        assert function["parameters"] == WEATHER.parameters
    else:  # the ollama SDK keeps only the keywords its Tool model knows
        assert function["parameters"]["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert body["tools"][1]["function"]["name"] == "get_time"
    if provider == "openai":
        assert call.id is not None and call.id.startswith("call_")
        assert completion.finish_reason == "tool_calls"
    else:
        assert call.id is None  # Ollama gives calls no id
        assert completion.finish_reason == "stop"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_results_in_history_reach_the_server_and_are_answered(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with make_client(provider, server, tools=[WEATHER]) as client:  # per client
        history = [Message("user", "Weather in Paris?")]
        first = await client.generate(history)
        history.append(first.message)
        history.append(Message.tool_result(first.tool_calls[0], {"temperature": 21}))
        second = await client.generate(history)
    assert second.tool_calls == ()
    assert second.text == 'Simulated reply to: {"temperature": 21}'
    sent = last_body(server)["messages"]
    assert sent[2]["role"] == "tool" and sent[2]["content"] == '{"temperature": 21}'
    if provider == "openai":
        assert sent[1]["tool_calls"][0]["id"] == first.tool_calls[0].id
        assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == (
            first.tool_calls[0].arguments
        )
        assert sent[2]["tool_call_id"] == first.tool_calls[0].id
        assert "name" not in sent[2]  # not in OpenAI's API
    else:
        assert sent[1]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": first.tool_calls[0].arguments}}
        ]
        assert sent[2]["tool_name"] == "get_weather"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_streams_end_carries_the_tool_calls(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    server.reply_with(
        "Let me look.",
        tool_calls=[("get_weather", {"city": "Paris, France", "days": 3}), ("get_time", {})],
    )
    client = make_client(provider, server)
    async with client, client.stream("Weather?", tools=[WEATHER, TIME]) as deltas:
        got = "".join([delta async for delta in deltas])
    assert got == "Let me look."
    assert [(c.name, c.arguments) for c in deltas.tool_calls] == [
        ("get_weather", {"city": "Paris, France", "days": 3}),
        ("get_time", {}),
    ]
    if provider == "openai":
        assert deltas.finish_reason == "tool_calls"
        assert [c.id for c in deltas.tool_calls] == ["call_sim00000001_0", "call_sim00000001_1"]


async def test_openai_streams_arguments_in_pieces_by_index(
    simulated_server_factory: Factory,
) -> None:
    """The simulator splits arguments over many deltas, as OpenAI does: assembled whole."""
    from llmclient.testing._tools import Call, openai_call_deltas

    deltas = openai_call_deltas([Call("f", {"a": "long enough to split"}, "call_1")])
    assert len(deltas) > 3 and deltas[1] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"a": "'}}]
    }


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_choice_names_a_tool_or_turns_tools_off(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with make_client(provider, server, tools=[WEATHER, TIME]) as client:
        off = await client.generate("hi", tool_choice="none")
        assert off.tool_calls == () and off.text == "Simulated reply to: hi"
        if provider == "ollama":
            assert not last_body(server).get("tools")  # no tool_choice in Ollama: no tools
            with pytest.raises(UnsupportedFeatureError, match="tool_choice='get_time'"):
                await client.generate("hi", tool_choice="get_time")
        else:
            assert last_body(server)["tool_choice"] == "none"
            named = await client.generate("hi", tool_choice="get_time")
            assert [c.name for c in named.tool_calls] == ["get_time"]
            assert last_body(server)["tool_choice"] == {
                "type": "function",
                "function": {"name": "get_time"},
            }
    assert server.stats.by_path[
        ("/api/chat" if provider == "ollama" else "/v1/chat/completions")
    ] == 2 - (provider == "ollama")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_bad_tools_are_refused_before_any_request(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with make_client(provider, server) as client:
        with pytest.raises(ConfigurationError, match="tool_choice='get_wether'"):
            await client.generate("hi", tools=[WEATHER], tool_choice="get_wether")
        with pytest.raises(ConfigurationError, match="tools"):
            await client.generate("hi", tools=[{"type": "function"}])
        with pytest.raises(ConfigurationError, match="same name"):
            await client.generate("hi", tools=[WEATHER, WEATHER])
    assert server.stats.requests == 0


async def test_openai_tool_arguments_that_are_not_json_are_a_malformed_answer(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.0)
    server.reply_with(
        tool_calls=[("get_weather", '{"city": "Par')], count=2 * FAST_RETRY.max_attempts
    )
    async with make_client("openai", server) as client:
        with pytest.raises(MalformedResponseError, match=r"get_weather.*not JSON.*Par"):
            await client.generate("Weather?", tools=[WEATHER])
        with pytest.raises(MalformedResponseError, match="get_weather"):
            async with client.stream("Weather?", tools=[WEATHER]) as deltas:
                async for _ in deltas:
                    pass


def test_tool_calls_and_messages_take_openai_dicts() -> None:
    message = Message.coerce(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        }
    )
    assert message.tool_calls == (ToolCall("f", {}, "c1"),)
    no_content = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}
    assert Message.coerce(no_content) == Message("assistant", "", (ToolCall("f", {}),))
    assert Message.coerce({"role": "tool", "content": "1", "tool_call_id": "c1"}).to_dict() == {
        "role": "tool",
        "content": "1",
        "tool_call_id": "c1",
    }
    with pytest.raises(ValueError, match="only assistant turns"):
        Message("user", "x", tool_calls=(ToolCall("f", {}),))


# ----------------------------------------------------------------------- structured output
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_pydantic_model_gives_a_validated_instance(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with make_client(provider, server) as client:
        completion = await client.generate("Ada", response_format=Person)
    assert completion.parsed == Person(name="Ada", age=1, tags=["Ada"])
    body = last_body(server)
    if provider == "openai":
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "Person", "schema": Person.model_json_schema()},
        }
    else:
        assert body["format"] == Person.model_json_schema()  # top level, not an option


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_schema_dict_gives_parsed_json_and_openais_wrapper_passes_through(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    wrapped = {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": True},
    }
    async with make_client(provider, server) as client:
        plain = await client.generate("judge", response_format=schema)
        assert plain.parsed == {"ok": True}
        strict = await client.generate("judge", response_format=wrapped)
        assert strict.parsed == {"ok": True}
    body = last_body(server)
    if provider == "openai":
        assert body["response_format"] == wrapped
    else:
        assert body["format"] == schema


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_reply_that_fails_validation_is_retried_and_counted_once(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    server.reply_with('{"name": "Ada", "age": "old"}')
    async with make_client(provider, server) as client:
        completion = await client.generate("Ada", response_format=Person)
        stats = client.stats
    assert completion.parsed == Person(name="Ada", age=1, tags=["Ada"])
    assert completion.attempts == 2
    assert (stats.completed, stats.failed, stats.retries) == (1, 0, 1)
    assert server.stats.requests == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_reply_that_never_validates_is_a_clear_malformed_response_error(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    server.reply_with('{"name": "Ada"}', count=FAST_RETRY.max_attempts)
    async with make_client(provider, server) as client:
        with pytest.raises(MalformedResponseError, match=r"'Person'.*age.*Field required"):
            await client.generate("Ada", response_format=Person)
        server.reply_with("not json at all", count=FAST_RETRY.max_attempts)
        with pytest.raises(MalformedResponseError, match=r"not JSON.*not json at all"):
            await client.generate("Ada", response_format={"type": "object"})
        assert client.stats.failed == 2
    assert server.stats.requests == 2 * FAST_RETRY.max_attempts


async def test_json_mode_still_works_and_cannot_be_combined_with_a_schema(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with make_client("ollama", server, json_mode=True) as client:
        await client.generate("hi")
        assert last_body(server)["format"] == "json"
        with pytest.raises(ConfigurationError, match="json_mode=True and response_format"):
            await client.generate("hi", response_format=Person)
    with pytest.raises(ConfigurationError, match="response_format"):
        OpenAIClient("m", base_url=server.openai_base_url, response_format=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="json_mode=True"):
        OpenAIClient("m", base_url=server.openai_base_url, response_format={"type": "json_object"})


# ------------------------------------------------------------------------------- images
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(16))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_image_bytes_reach_each_provider_in_its_form(
    provider: str, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with make_client(provider, server) as client:
        answer = await client.generate(
            [Message("user", (text("What is this?"), image(PNG)))], max_tokens=50
        )
    assert answer.text == "Simulated reply to: What is this?"
    [sent] = last_body(server)["messages"]
    encoded = base64.b64encode(PNG).decode()
    if provider == "openai":
        assert sent["content"] == [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
        ]
    else:
        assert sent == {"role": "user", "content": "What is this?", "images": [encoded]}


async def test_openai_takes_image_urls_and_openai_content_dicts(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.0)
    url = "https://example.com/cat.png"
    parts = [{"type": "text", "text": "Cat?"}, {"type": "image_url", "image_url": {"url": url}}]
    async with make_client("openai", server) as client:
        await client.generate([{"role": "user", "content": parts}])
    assert last_body(server)["messages"][0]["content"] == parts


async def test_an_image_url_for_ollama_is_refused_naming_it_before_any_request(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with make_client("ollama", server) as client:
        with pytest.raises(ConfigurationError, match=r"https://example\.com/cat\.png"):
            await client.generate(
                [Message("user", (text("Cat?"), image("https://example.com/cat.png")))]
            )
    assert server.stats.requests == 0


def test_bad_content_parts_are_refused_naming_them() -> None:
    with pytest.raises(TypeError, match="content parts"):
        Message("user", ({"type": "audio"},))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ftp://x"):
        image("ftp://x")
    with pytest.raises(TypeError, match="source"):
        image(42)  # type: ignore[arg-type]


async def test_openai_is_sent_no_tool_choice_without_tools(
    simulated_server_factory: Factory,
) -> None:
    """OpenAI refuses a tool_choice with no tools: a client's default choice waits for tools."""
    server = await simulated_server_factory(latency=0.0)
    async with make_client("openai", server, tool_choice="required") as client:
        await client.generate("hi")
        assert "tool_choice" not in last_body(server)
        await client.generate("hi", tools=[TIME])
        assert last_body(server)["tool_choice"] == "required"
