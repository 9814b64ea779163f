"""Type checkers catch misspelt and mistyped keywords of constructors and calls.

mypy runs in-process on two scratch modules (one with typos, one correct), as a user's
`mypy --strict` would, against the installed `llmclient` and its `py.typed`.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import get_type_hints

import pytest

from llmclient.clients.base import BaseLLMClient, ClientConstructorOptions, ClientKeywords
from llmclient.clients.params import CallOptions, SamplingOptions, SamplingParams

TYPOS = {
    'OllamaClient("m", max_concurent=4)': "max_concurent",
    'OllamaClient("m", keep_alive=3, hots=":1")': "hots",
    'OpenAIClient("m", rpm="fast")': '"rpm"',
    'OpenAIClient("m", sytem_prompt="s")': "sytem_prompt",
    'AzureOpenAIClient("m", api_versoin="v")': "api_versoin",
    'OllamaClient.settings_for("m", max_concurent=4)': "max_concurent",
    'CLIENT.generate("x", temprature=0)': "temprature",
    'CLIENT.generate("x", max_tokens="10")': '"max_tokens"',
    'CLIENT.generate_answer("x", temprature=0)': "temprature",
    'CLIENT.generate_topk_per_token("x", top_logprob=3)': "top_logprob",
    'CLIENT.generate_inputs_prob("x", modle="m")': "modle",
    'CLIENT.stream("x", max_token=3)': "max_token",
    'CLIENT.generate("x", tool=[])': "tool",
    'CLIENT.generate("x", tool_choise="auto")': "tool_choise",
    'CLIENT.generate("x", response_fromat={})': "response_fromat",
    'CLIENT.generate("x", response_format=3)': '"response_format"',
}

CORRECT = """\
from pydantic import BaseModel

from llmclient import AzureOpenAIClient, OllamaClient, OpenAIClient, run_concurrent
from llmclient import Message, Tool, image, text


class Answer(BaseModel):
    value: int


client = OllamaClient(
    "m", host=":1", keep_alive="5m", system_prompt="s", temperature=0, max_concurrent=4
)
cloud = OpenAIClient("m", base_url="http://127.0.0.1:1/v1", api_key="k", rpm=60.0, seed=1)
azure = AzureOpenAIClient("m", api_version="2024-10-21", observer=None, profile=None)
settings = OllamaClient.settings_for("m", host=":1", max_concurrent=2)


async def main() -> None:
    await client.generate("x", model="other", temperature=0.5, stop=["\\n"], top_k=3)
    await client.generate("x", provider_options={"num_ctx": 4096}, json_mode=True)
    await client.generate_answer("x", ["hi", "hello"], max_tokens=10, model=None, seed=None)
    await client.generate_topk_per_token("x", top_logprobs=3)
    client.stream("x", top_p=0.9, repetition_penalty=1.1)
    tool = Tool("f", "does f", {"type": "object", "properties": {}})
    await client.generate("x", tools=[tool, {"type": "function"}], tool_choice="f")
    await client.generate("x", response_format=Answer)
    await client.generate("x", response_format={"type": "object"})
    await client.generate([Message("user", (text("what?"), image(b"...")))])
    await run_concurrent(client.generate_answer, ["a"], max_concurrent=3)
"""


def _typo_module() -> tuple[str, dict[int, str]]:
    """A module with one typo per line, and the name each line's error must mention."""
    lines = ["from llmclient import AzureOpenAIClient, OllamaClient, OpenAIClient", ""]
    lines += ['CLIENT = OllamaClient("m")', "", "", "async def main() -> None:"]
    expected = {}
    for call, name in TYPOS.items():
        awaited = call.startswith("CLIENT.") and "stream" not in call
        lines.append(f"    {'await ' if awaited else ''}{call}")
        expected[len(lines)] = name
    return "\n".join(lines) + "\n", expected


def test_type_checkers_catch_keyword_typos(tmp_path: Path) -> None:
    typos, expected = _typo_module()
    (tmp_path / "typos.py").write_text(typos)
    (tmp_path / "correct.py").write_text(CORRECT)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")  # not the project's own configuration
    api = pytest.importorskip("mypy.api")  # a dev tool: absent where only the runtime is
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "--hide-error-context",
            str(tmp_path / "correct.py"),
            str(tmp_path / "typos.py"),
        ]
    )
    assert stderr == ""
    errors: dict[tuple[str, int], list[str]] = {}
    for match in re.finditer(r"^.*?(\w+)\.py:(\d+): error: (.*)$", stdout, re.MULTILINE):
        errors.setdefault((match[1], int(match[2])), []).append(match[3])
    assert not [key for key in errors if key[0] == "correct"], stdout
    for line, name in expected.items():
        assert any(name in e for e in errors.get(("typos", line), [])), (line, name, stdout)
    assert {line for file, line in errors} == set(expected), stdout


def test_sampling_keywords_have_the_names_and_types_runtime_checks() -> None:
    fields = {name: field.annotation for name, field in SamplingParams.model_fields.items()}
    assert get_type_hints(SamplingOptions) == fields
    assert get_type_hints(CallOptions) == {**fields, "model": str | None}


def test_subclass_keywords_are_every_keyword_of_the_base_constructor() -> None:
    init = inspect.signature(BaseLLMClient.__init__).parameters
    named = {n for n, p in init.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    hints = get_type_hints(BaseLLMClient.__init__)
    keywords = get_type_hints(ClientKeywords)
    assert set(keywords) == named | set(ClientConstructorOptions.__annotations__)
    assert {n: keywords[n] for n in named} == {n: hints[n] for n in named}
