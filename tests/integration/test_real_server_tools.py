"""Tools and structured output against a real llama.cpp server (``--jinja``).

The tiny random-weight model writes gibberish. A JSON schema (`response_format`) makes
llama.cpp constrain its output with a grammar, so what comes back has the asked shape and
the client must validate it. Tools and tool turns reach the server's chat template (the
prompt grows by them); a call the model makes cannot be forced here: this llama.cpp builds a
tool-call grammar only for templates with a generation prompt, and then fails to initialise
it on this model, so the gibberish model never calls a tool (the simulator tests cover the
answers with calls).
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from llmclient import Message, OpenAIClient, Tool, ToolCall

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
    },
)
CALL = ToolCall("set_light", {"room": "hall", "on": True}, "call_1")
HISTORY = [
    Message("user", "Lights?"),
    Message("assistant", "", tool_calls=(CALL,)),
    Message.tool_result(CALL, {"done": True}),
]


class Verdict(BaseModel):
    ok: bool
    grade: Literal["a", "b", "c"]


def client(server: Any, **options: Any) -> OpenAIClient:
    return OpenAIClient(server.model, base_url=server.base_url, temperature=0, **options)


async def test_tools_and_tool_turns_reach_the_chat_template(llama_jinja_server: Any) -> None:
    async with client(llama_jinja_server, max_tokens=4) as llm:
        bare = await llm.generate("Lights?")
        offered = await llm.generate("Lights?", tools=[LIGHT])
        answered = await llm.generate(HISTORY, tools=[LIGHT])
        async with llm.stream(HISTORY, tools=[LIGHT]) as deltas:
            text = "".join([delta async for delta in deltas])
    assert bare.usage and offered.usage and answered.usage
    assert offered.usage.prompt_tokens > bare.usage.prompt_tokens + 20  # the tool's schema
    assert answered.usage.prompt_tokens > offered.usage.prompt_tokens  # the call and result
    assert answered.tool_calls == () and deltas.tool_calls == ()
    assert text and deltas.finish_reason == "length"


async def test_structured_output_is_validated_into_parsed(llama_jinja_server: Any) -> None:
    async with client(llama_jinja_server, max_tokens=100) as llm:
        completion = await llm.generate("Judge this.", response_format=Verdict)
        after_tools = await llm.generate(HISTORY, tools=[LIGHT], response_format=Verdict)
    assert isinstance(completion.parsed, Verdict)
    assert completion.parsed.grade in ("a", "b", "c")
    assert isinstance(after_tools.parsed, Verdict)
