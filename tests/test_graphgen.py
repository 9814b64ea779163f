"""llmclient as GraphGen builds and calls it, against the simulated server (what the server
received is checked): `llmclient.compat.graphgen` built exactly as GraphGen's `init_llm` builds
its clients, and the plain clients given GraphGen's keywords."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator
from typing import Any

import pytest

from llmclient import (
    BaseLLMClient,
    ConfigurationError,
    OllamaClient,
    OpenAIClient,
    Token,
    run_concurrent_sync,
)
from llmclient.compat import graphgen
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


def with_wrapper_keywords(
    client_class: type[BaseLLMClient], prefix: str, **extra: Any
) -> BaseLLMClient:
    """A plain client given every keyword GraphGen's clients take (BaseLLMWrapper's too)."""
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
    client = with_wrapper_keywords(OpenAIClient, "SYNTHESIZER")
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
    client = with_wrapper_keywords(OllamaClient, "TRAINEE", keep_reasoning=False)
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
    client = with_wrapper_keywords(OpenAIClient, "SYNTHESIZER", keep_reasoning=True)
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


# --- llmclient.compat.graphgen, built as GraphGen's init_llm builds its clients ---------------

# InternScience/GraphGen d9b8bed, graphgen/common/init_llm.py (LLMServiceActor.__init__): the
# client of each API backend is built from `config`, the <PREFIX>_* variables with the prefix
# cut and the names lowercased (so every value is a string), plus config["tokenizer"]; only
# the OpenAI client is also given `backend=`. The variables are those .env.example sets for
# each backend. Copied as data: (class init_llm imports, variables, passes backend=).
INIT_LLM: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "openai_api": ("OpenAIClient", ("MODEL", "BASE_URL", "API_KEY"), True),
    "azure_openai_api": ("OpenAIClient", ("MODEL", "BASE_URL", "API_KEY", "API_VERSION"), True),
    "ollama_api": ("OllamaClient", ("MODEL", "BASE_URL"), False),
    "http_api": ("HTTPClient", ("MODEL", "BASE_URL", "API_KEY"), False),
}
# What GraphGen's clients send when init_llm passes no sampling variable: BaseLLMWrapper's
# defaults (graphgen/bases/base_llm_wrapper.py), as each client puts them in its request.
SENT = {
    "openai": {"temperature": 0.0, "top_p": 0.95, "max_tokens": 4096},
    "ollama": {"temperature": 0.0, "top_p": 0.95, "num_predict": 4096},
}


def environment(backend: str, server: SimulatedServer) -> dict[str, str]:
    """The variables a user sets for `backend`, pointing at the simulated server."""
    url = {"azure_openai_api": server.url, "ollama_api": server.url}
    return {
        "MODEL": "sim-model",
        "BASE_URL": url.get(backend, server.openai_base_url),
        "API_KEY": "sk-graphgen-test",
        "API_VERSION": "2024-10-21",
    }


def build_as_init_llm(backend: str, variables: dict[str, str], **more: str) -> Any:
    """What GraphGen's init_llm does for `backend`, with llmclient's compat classes imported
    where it imports its own (`more`: further <PREFIX>_* variables, lowercased)."""
    class_name, names, passes_backend = INIT_LLM[backend]
    config: dict[str, Any] = {name.lower(): variables[name] for name in names} | more
    config["tokenizer"] = WordTokenizer()
    if passes_backend:
        return getattr(graphgen, class_name)(**config, backend=backend)
    return getattr(graphgen, class_name)(**config)


@pytest.mark.parametrize("backend", sorted(INIT_LLM))
def test_every_backend_builds_and_sends_graphgens_sampling(
    backend: str, threaded_server: SimulatedServer
) -> None:
    client = build_as_init_llm(backend, environment(backend, threaded_server))
    assert isinstance(client, graphgen.AzureOpenAIClient) == (backend == "azure_openai_api")
    assert client.backend == backend and client.tokenizer.encode("a b") == ["a", "b"]
    answers = graphgen.run_concurrent(client.generate_answer, ["q0", "q1", "q2"])
    assert answers == [f"Simulated reply to: q{i}" for i in range(3)]
    bodies = [b for b in threaded_server.stats.bodies if isinstance(b, dict)]
    assert len(bodies) == 3
    for body in bodies:
        sent = body["options"] if backend == "ollama_api" else body
        expected = SENT["ollama" if backend == "ollama_api" else "openai"]
        assert {k: sent.get(k) for k in expected} == expected
        assert not {"top_k", "repetition_penalty", "repeat_penalty", "seed"} & set(sent)
        assert "response_format" not in body and "format" not in body
    assert len(client.token_usage) == 3  # GraphGen's shape: one dict per answer
    for usage in client.token_usage:
        assert set(usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert sum(u["total_tokens"] for u in client.token_usage) == client.stats.total_tokens


def test_the_plain_clients_keep_none_of_graphgens_defaults(
    threaded_server: SimulatedServer,
) -> None:
    plain = OpenAIClient("sim-model", base_url=threaded_server.openai_base_url)
    assert run_concurrent_sync(plain.generate_answer, ["q"]) == ["Simulated reply to: q"]
    body = threaded_server.stats.bodies[-1]
    assert isinstance(body, dict)
    assert not {"temperature", "top_p", "max_tokens"} & set(body)


def test_variables_are_strings_and_unknown_ones_are_llmclients(
    threaded_server: SimulatedServer,
) -> None:
    variables = environment("openai_api", threaded_server)
    client = build_as_init_llm(
        "openai_api",
        variables,
        temperature="0.7",
        max_tokens="128",
        seed="7",
        json_mode="true",
        system_prompt="Be brief.",
        max_concurrent="2",
    )
    assert client.profile.max_concurrent == 2
    graphgen.run_concurrent(client.generate_answer, ["q"])
    body = threaded_server.stats.bodies[-1]
    assert isinstance(body, dict)
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.7, 128, 7)
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    with pytest.raises(ConfigurationError, match="temperature='hot'"):
        build_as_init_llm("openai_api", variables, temperature="hot")
    with pytest.raises(ConfigurationError, match="tp_size='2'"):
        build_as_init_llm("openai_api", variables, tp_size="2")
    with pytest.raises(ConfigurationError, match="keep_reasoning"):
        build_as_init_llm("openai_api", variables, keep_reasoning="true")
    assert threaded_server.stats.requests == 1


def test_seed_zero_is_sent_as_each_graphgen_client_sends_it(
    threaded_server: SimulatedServer,
) -> None:
    for backend in ("ollama_api", "openai_api"):
        client = build_as_init_llm(backend, environment(backend, threaded_server), seed="0")
        graphgen.run_concurrent(client.generate_answer, ["q"])
    ollama_body, openai_body = threaded_server.stats.bodies[-2:]
    assert isinstance(ollama_body, dict) and isinstance(openai_body, dict)
    assert ollama_body["options"]["seed"] == 0 and "seed" not in openai_body


def test_a_backend_the_class_does_not_serve_names_the_class_that_does(
    threaded_server: SimulatedServer,
) -> None:
    with pytest.raises(ConfigurationError, match=r"backend='ollama_api'.*use OllamaClient"):
        graphgen.OpenAIClient(base_url=threaded_server.openai_base_url, backend="ollama_api")
    with pytest.raises(ConfigurationError, match="backend='vllm'"):
        graphgen.OpenAIClient(base_url=threaded_server.openai_base_url, backend="vllm")
    with pytest.raises(ConfigurationError, match="no API version"):
        graphgen.OpenAIClient(base_url=threaded_server.url, api_key="k", backend="azure_openai_api")


@pytest.mark.parametrize(
    ("answer", "graphgens"),
    [
        ("Answer first <think>hidden</think> visible", "Answer first  visible"),
        ("<think>a</think> one <think>b</think> two", "one  two"),
        ("<think>only thoughts</think>", "<think>only thoughts</think>"),
        ("cut off thoughts</think> answer", "answer"),
        ("  no tags  ", "no tags"),
    ],
)
def test_filter_think_tags_is_graphgens(answer: str, graphgens: str) -> None:
    assert graphgen.filter_think_tags(answer) == graphgens
    assert graphgen.OpenAIClient.filter_think_tags(answer) == graphgens


def test_compat_answers_filter_as_graphgen_the_plain_ones_keep_the_last_part(
    threaded_server: SimulatedServer,
) -> None:
    # sim-thinker answers "<think>...</think> Simulated reply to: <prompt>"
    prompts = ["Answer first <think>hidden</think> visible", "a <think>x</think> b"]
    for backend in ("openai_api", "ollama_api"):
        variables = environment(backend, threaded_server) | {"MODEL": "sim-thinker"}
        client = build_as_init_llm(backend, variables)
        assert graphgen.run_concurrent(client.generate_answer, prompts) == [
            "Simulated reply to: Answer first  visible",
            "Simulated reply to: a  b",
        ]
    plain = OllamaClient("sim-thinker", base_url=threaded_server.url)
    assert run_concurrent_sync(plain.generate_answer, prompts) == ["visible", "b"]


def test_run_concurrent_is_graphgens_bounded_by_the_client(
    threaded_server: SimulatedServer, caplog: pytest.LogCaptureFixture
) -> None:
    variables = environment("ollama_api", threaded_server)
    client = build_as_init_llm("ollama_api", variables, max_concurrent="1")
    threaded_server.inject("401")  # never retried: the first item fails
    for failures in (1, 0):  # a new event loop per call, as GraphGen's
        results = graphgen.run_concurrent(client.generate_answer, [f"q{i}" for i in range(6)])
        assert len(results) == 6 and results.count(None) == failures
    assert "item 0 failed: AuthenticationError" in caplog.text
    assert threaded_server.stats.peak_in_flight == 1 and threaded_server.stats.peak_waiting == 0

    async def inside_a_loop() -> list[str | None]:  # a notebook cell: it runs all the same
        return graphgen.run_concurrent(client.generate_answer, ["q"])

    assert asyncio.run(inside_a_loop()) == ["Simulated reply to: q"]


def test_graphgens_token_takes_ppl() -> None:
    token = graphgen.Token("yes", 0.5, [graphgen.Token("no", 0.25)], ppl=1.7)
    assert (token.ppl, token.top_candidates[0].ppl, token.logprob) == (1.7, None, math.log(0.5))
    assert isinstance(token, Token)


class GraphGensRPM:
    """GraphGen's own limiter objects keep their number in `rpm`/`tpm`, as these do."""

    def __init__(self, rpm: int) -> None:
        self.rpm = rpm


def test_request_limit_turns_graphgens_rpm_and_tpm_on(
    threaded_server: SimulatedServer, caplog: pytest.LogCaptureFixture
) -> None:
    variables = environment("http_api", threaded_server)
    on = build_as_init_llm("http_api", variables, request_limit="true")
    assert (on.profile.rpm, on.profile.tpm) == (1000, 20000)  # GraphGen's RPM() and TPM()
    given = graphgen.HTTPClient(
        **{k.lower(): v for k, v in variables.items() if k != "API_VERSION"},
        request_limit=True,
        rpm=GraphGensRPM(rpm=60),
        tpm=graphgen.TPM(tpm=9000),
    )
    assert (given.profile.rpm, given.profile.tpm) == (60, 9000)
    off = graphgen.OllamaClient(base_url=threaded_server.url, rpm=graphgen.RPM(10))
    assert off.profile.rpm is None and "only with request_limit=True" in caplog.text
    with pytest.raises(ConfigurationError, match="rpm='fast'"):
        graphgen.OllamaClient(base_url=threaded_server.url, request_limit=True, rpm="fast")
