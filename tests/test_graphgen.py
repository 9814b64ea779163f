"""llmclient as GraphGen builds and calls it: its constructor keywords, its environment
variable names, its calls, against the simulated server (what the server received is checked)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from llmclient import BaseLLMClient, OllamaClient, OpenAIClient, run_concurrent_sync
from llmclient.testing import SimulatedServer


class WordTokenizer:
    """Any object with encode/decode will do: GraphGen's KG builder counts tokens with it."""

    def encode(self, text: str) -> list[str]:
        return text.split()

    def decode(self, tokens: list[str]) -> str:
        return " ".join(tokens)


@pytest.fixture
def graphgen_env(
    threaded_server: SimulatedServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("SYNTHESIZER_MODEL", "sim-thinker")
    monkeypatch.setenv("SYNTHESIZER_BASE_URL", threaded_server.openai_base_url)
    monkeypatch.setenv("SYNTHESIZER_API_KEY", "sk-graphgen-test")
    monkeypatch.setenv("TRAINEE_MODEL", "sim-model")
    monkeypatch.setenv("TRAINEE_BASE_URL", threaded_server.url)
    yield


def init_llm(client_class: type[BaseLLMClient], prefix: str, **extra: Any) -> BaseLLMClient:
    """As GraphGen's init_llm builds its clients: every keyword it passes."""
    return client_class(
        model=os.environ[f"{prefix}_MODEL"],
        base_url=os.environ[f"{prefix}_BASE_URL"],
        api_key=os.environ.get(f"{prefix}_API_KEY"),
        tokenizer=WordTokenizer(),
        system_prompt="You are a helpful assistant.",
        temperature=0.0,
        max_tokens=4096,
        top_p=0.95,
        top_k=50,
        repetition_penalty=1.05,
        seed=42,
        json_mode=False,
        topk_per_token=5,
        **extra,
    )


def test_openai_client_as_graphgen_builds_and_calls_it(
    threaded_server: SimulatedServer,
    graphgen_env: None,
) -> None:
    client = init_llm(OpenAIClient, "SYNTHESIZER")
    assert client.tokenizer.encode("two words") == ["two", "words"]  # type: ignore[attr-defined]
    answer = run_concurrent_sync(client.generate_answer, ["what is a graph"])[0]
    assert answer == "Simulated reply to: what is a graph"  # the <think> block is stripped
    body = threaded_server.stats.bodies[-1]
    assert isinstance(body, dict)
    assert body["temperature"] == 0.0 and body["top_p"] == 0.95 and body["seed"] == 42
    assert body["max_tokens"] == 4096 and body["top_k"] == 50
    assert body["repetition_penalty"] == 1.05
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    stats = client.stats
    assert stats.prompt_tokens > 0 and stats.completion_tokens > 0


def test_ollama_client_takes_base_url_and_maps_graphgen_keywords(
    threaded_server: SimulatedServer,
    graphgen_env: None,
) -> None:
    client = init_llm(OllamaClient, "TRAINEE", keep_reasoning=False)
    history = ["hello", "hi there"]
    assert run_concurrent_sync(lambda t: client.generate_answer(t, history), ["next"]) == [
        "Simulated reply to: next"
    ]
    body = threaded_server.stats.bodies[-1]
    assert isinstance(body, dict)
    options = body["options"]
    assert options["repeat_penalty"] == 1.05 and options["num_predict"] == 4096
    assert options["top_k"] == 50 and options["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]


def test_json_mode_goes_where_each_provider_wants_it(
    threaded_server: SimulatedServer,
) -> None:
    native = OllamaClient("sim-model", base_url=threaded_server.url, json_mode=True)
    run_concurrent_sync(native.generate_answer, ["q"])
    assert threaded_server.stats.bodies[-1]["format"] == "json"  # type: ignore[index]
    assert "format" not in threaded_server.stats.bodies[-1]["options"]  # type: ignore[index]
    compat = OpenAIClient("sim-model", base_url=threaded_server.openai_base_url, json_mode=True)
    run_concurrent_sync(compat.generate_answer, ["q"])
    assert threaded_server.stats.bodies[-1]["response_format"] == {"type": "json_object"}  # type: ignore[index]


def test_graphgen_calls_and_repeated_loops(
    threaded_server: SimulatedServer,
    graphgen_env: None,
) -> None:
    client = init_llm(OpenAIClient, "SYNTHESIZER", keep_reasoning=True)
    role_history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    for round_ in range(3):  # GraphGen opens a new event loop for every batch
        results = run_concurrent_sync(
            lambda t: client.generate_answer(t, role_history), [f"q{round_}.{i}" for i in range(8)]
        )
        assert all(r.startswith("<think>") for r in results)  # kept on request
    tokens = run_concurrent_sync(client.generate_topk_per_token, ["yes or no"])[0]
    assert tokens[0].top_candidates and tokens[0].ppl >= 1.0
    with pytest.raises(NotImplementedError):
        run_concurrent_sync(client.generate_inputs_prob, ["x"])
    assert client.stats.completed == 25


def test_topk_per_token_zero_is_accepted(threaded_server: SimulatedServer) -> None:
    client = OpenAIClient("sim-model", base_url=threaded_server.openai_base_url, topk_per_token=0)
    tokens = run_concurrent_sync(client.generate_topk_per_token, ["next"])[0]
    assert tokens and tokens[0].top_candidates == []


def test_failed_items_become_none_as_graphgen_expects(
    threaded_server: SimulatedServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = OllamaClient("sim-model", base_url=threaded_server.url, max_concurrent=1)
    threaded_server.inject("401")  # not retried: the first item fails
    prompts = ["a", "b", "c"]
    results = run_concurrent_sync(client.generate_answer, prompts, failed_as_none=True)
    assert results == [None, "Simulated reply to: b", "Simulated reply to: c"]
    assert "item 0 failed: AuthenticationError" in caplog.text
    threaded_server.inject("401")
    with pytest.raises(Exception, match="unauthorized"):
        run_concurrent_sync(client.generate_answer, prompts)  # without it: raised
