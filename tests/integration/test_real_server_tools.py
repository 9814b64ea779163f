"""Tool calls and structured output against a real llama.cpp server.

The tiny random-weight model writes gibberish, but llama.cpp constrains its output with a
grammar when asked for a tool call (`tool_choice="required"`, with `--jinja`) or a JSON schema
(`response_format`): so what comes back has the asked shape, and the client must parse it.
The schemas use enums and booleans only, so the constrained answer stays short.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from llmclient import Message, OpenAIClient, Tool

pytestmark = pytest.mark.integration

LIGHT = Tool(
    "set_light",
    "Turn a light on or off",
    {
        "type": "object",
        "properties": {
            "room": {"type": "string", "enum": ["kitchen", "hall"]},
            "on": {"type": "boolean"},
        },
        "required": ["room", "on"],
        "additionalProperties": False,
    },
)


class Verdict(BaseModel):
    ok: bool
    grade: Literal["a", "b", "c"]


def client(server: Any, **options: Any) -> OpenAIClient:
    return OpenAIClient(server.model, base_url=server.base_url, **options)


async def test_a_required_tool_call_comes_back_parsed(llama_jinja_server: Any) -> None:
    async with client(llama_jinja_server, temperature=0, max_tokens=200) as llm:
        completion = await llm.generate(
            "Turn on the kitchen light.", tools=[LIGHT], tool_choice="required"
        )
        assert completion.tool_calls, completion
        call = completion.tool_calls[0]
        assert call.name == "set_light"
        assert call.arguments["room"] in ("kitchen", "hall")
        assert isinstance(call.arguments["on"], bool)
        assert completion.finish_reason == "tool_calls"
        # the call and its result go back in the history the server's template renders
        history = [
            Message("user", "Turn on the kitchen light."),
            completion.message,
            Message.tool_result(call, {"done": True}),
        ]
        answer = await llm.generate(history, tools=[LIGHT], max_tokens=8)
        assert answer.finish_reason in ("length", "stop", "tool_calls")


async def test_a_streamed_tool_call_is_assembled(llama_jinja_server: Any) -> None:
    llm = client(llama_jinja_server, temperature=0, max_tokens=200)
    async with llm, llm.stream("Lights?", tools=[LIGHT], tool_choice="required") as deltas:
        async for _ in deltas:
            pass
    assert [call.name for call in deltas.tool_calls] == ["set_light"]
    assert set(deltas.tool_calls[0].arguments) == {"room", "on"}


async def test_structured_output_is_validated_into_parsed(llama_server: Any) -> None:
    async with client(llama_server, temperature=0, max_tokens=100) as llm:
        completion = await llm.generate("Judge this.", response_format=Verdict)
    assert isinstance(completion.parsed, Verdict)
    assert completion.parsed.grade in ("a", "b", "c")
