"""Providers by name, settings without a client, and the library probe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from llmclient import (
    BaseLLMClient,
    ConfigurationError,
    LLMError,
    OllamaClient,
    OpenAIClient,
    client_for,
)
from llmclient.clients.params import ChatRequest
from llmclient.clients.registry import provider_class, provider_names
from llmclient.probing import probe
from llmclient.testing import SimulatedServer
from llmclient.types import Completion

Factory = Callable[..., Awaitable[SimulatedServer]]


class EchoClient(BaseLLMClient):
    """A provider defined by a user: subclassing registers it."""

    provider = "echo-test"
    default_base_url = "http://127.0.0.1:9"

    async def _chat(self, request: ChatRequest) -> Completion:
        return Completion(text=request.messages[-1]["content"])

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str]:
        yield request.messages[-1]["content"]

    async def _embed(self, model: str, texts: list[str]) -> tuple[list[list[float]], int | None]:
        return [[float(len(t))] for t in texts], None

    def _classify(self, error: Exception) -> LLMError | None:
        return None

    def _make_sdk(self) -> object:
        return object()

    async def _close_sdk(self, sdk: object) -> None:
        return None


async def test_client_for_builds_each_provider(simulated_server: SimulatedServer) -> None:
    async with client_for("ollama", "sim-model", base_url=simulated_server.url) as ollama:
        assert isinstance(ollama, OllamaClient)
        assert await ollama.generate_answer("hi") == "Simulated reply to: hi"
    base_url = simulated_server.openai_base_url
    async with client_for("OpenAI", "sim-model", base_url=base_url, max_concurrent=2) as openai:
        assert isinstance(openai, OpenAIClient)
        assert openai.profile.max_concurrent == 2
        assert await openai.generate_answer("hi") == "Simulated reply to: hi"


async def test_a_subclass_registers_itself() -> None:
    assert "echo-test" in provider_names()
    assert provider_class("echo-test") is EchoClient
    async with client_for("echo-test", "m") as client:
        assert await client.generate_answer("same") == "same"


def test_unknown_provider_names_the_value_and_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"provider='nope'.*ollama, .*openai"):
        client_for("nope")


def test_settings_without_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ":11500")
    monkeypatch.setenv("LLMCLIENT_OLLAMA_MAX_CONCURRENT", "3")
    settings = OllamaClient.settings_for("llama3.2")
    assert settings.base_url == "http://127.0.0.1:11500"
    assert settings.profile.max_concurrent == 3
    assert settings.sources["max_concurrent"] == "env LLMCLIENT_OLLAMA_MAX_CONCURRENT"
    assert OllamaClient.settings_for(host=":11600").endpoint == "http://127.0.0.1:11600"


def test_ollama_takes_base_url_or_host_but_not_two_different() -> None:
    assert OllamaClient(base_url="http://10.0.0.5:11434").endpoint_name == "http://10.0.0.5:11434"
    with pytest.raises(ConfigurationError, match="host=':1' and base_url=':2'"):
        OllamaClient(host=":1", base_url=":2")


def test_cloud_without_key_is_refused_before_a_client_exists() -> None:
    with pytest.raises(ConfigurationError, match="no API key"):
        OpenAIClient.settings_for("gpt-test")


async def test_probe_measures_levels_and_recommends(simulated_server_factory: Factory) -> None:
    # 80 ms a request: a loaded machine's scheduling noise stays small beside it
    server = await simulated_server_factory(parallel=2, latency=0.08)
    report = await probe(
        "ollama", "sim-model", base_url=server.url, levels=[1, 2, 4], requests=8, max_tokens=4
    )
    assert [level.level for level in report.levels] == [1, 2, 4]
    assert all(level.errors == 0 for level in report.levels)
    best = report.recommended_max_concurrent
    assert best in (2, 4)  # 1 is half as fast on a 2-slot server; 2 and 4 are within noise
    assert report.env == f"LLMCLIENT_OLLAMA_MAX_CONCURRENT={best}"
    assert server.stats.peak_in_flight + server.stats.peak_waiting == 4  # the top level, no more
    assert server.stats.by_path["/api/chat"] == 1 + 3 * (1 + 8)  # each level warms up once


async def test_probe_refuses_bad_levels_before_sending(simulated_server: SimulatedServer) -> None:
    with pytest.raises(ConfigurationError, match=r"levels=0"):
        await probe("ollama", "sim-model", base_url=simulated_server.url, levels=[0])
    with pytest.raises(TypeError, match="levels"):
        await probe("ollama", "sim-model", base_url=simulated_server.url, levels=["2"])  # type: ignore[list-item]
    assert simulated_server.stats.requests == 0
