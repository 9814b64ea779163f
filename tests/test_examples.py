"""The programs in examples/ against the simulated server: what they print, what the server saw."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import llmclient.retry
from llmclient import AuthenticationError, client_for, run_concurrent
from llmclient.testing import SimulatedServer
from llmclient.testing.pytest_plugin import ServerFactory

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    """Import examples/<name>.py as a module (once)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fast_retries() -> Iterator[None]:
    llmclient.retry.set_testing(True)
    yield
    llmclient.retry.set_testing(False)


def test_third_provider_is_under_80_lines() -> None:
    assert len((EXAMPLES / "generate_api_provider.py").read_text().splitlines()) < 80


async def test_third_provider_answers_under_its_limit(
    simulated_server_factory: ServerFactory,
) -> None:
    example = load("generate_api_provider")
    server = await simulated_server_factory(parallel=4, latency=0.01)
    async with client_for("genapi", "sim-model", base_url=server.url, max_concurrent=2) as client:
        assert isinstance(client, example.GenerateAPIClient)
        answers = await run_concurrent(client.generate_answer, [f"item {i}" for i in range(12)])
        completion = await client.generate(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            max_tokens=8,
        )
        async with client.stream("tell me") as deltas:
            streamed = "".join([delta async for delta in deltas])
        vectors = await client.embed(["a", "b", "c"])
    assert [a.endswith(f"item {i}") for i, a in enumerate(answers)] == [True] * 12
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert "tell me" in streamed and deltas.finish_reason is not None
    assert len(vectors) == 3 and len({len(v) for v in vectors}) == 1
    assert server.stats.by_path["/api/generate"] == 14
    assert server.stats.peak_in_flight == 2  # the client's limit, not the server's 4 slots
    system_bodies = [b for b in server.stats.bodies if isinstance(b, dict) and "system" in b]
    assert system_bodies == [
        {
            "model": "sim-model",
            "prompt": "hi",
            "stream": False,
            "options": {"num_predict": 8},
            "system": "Be brief.",
        }
    ]


async def test_third_provider_errors_are_classified_and_retried(
    simulated_server: SimulatedServer, fast_retries: None
) -> None:
    load("generate_api_provider")
    async with client_for("genapi", "sim-model", base_url=simulated_server.url) as client:
        simulated_server.inject("503", count=2)
        assert (await client.generate_answer("after busy")).endswith("after busy")
        simulated_server.inject("missing_fields")
        assert (await client.generate_answer("after junk")).endswith("after junk")
        simulated_server.inject("401")
        with pytest.raises(AuthenticationError) as raised:
            await client.generate_answer("refused")
    assert raised.value.status_code == 401 and raised.value.provider == "genapi"
    assert raised.value.attempts == 1
    assert simulated_server.stats.statuses[503] == 2
    # 2 busy and an answer, a malformed one and an answer, one refused (never retried)
    assert simulated_server.stats.by_path["/api/generate"] == 6


def test_graphgen_migration_example(
    threaded_server: SimulatedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load("graphgen_migration")
    monkeypatch.setenv("SYNTHESIZER_BACKEND", "openai_api")
    monkeypatch.setenv("SYNTHESIZER_SYSTEM_PROMPT", "You are a helpful assistant.")
    monkeypatch.setenv("SYNTHESIZER_MODEL", "sim-model")
    monkeypatch.setenv("SYNTHESIZER_BASE_URL", threaded_server.openai_base_url)
    threaded_server.inject("401", path="/v1/chat/completions")  # one chunk fails: None
    result = example.main()
    entities, answers = result["entities"], result["answers"]
    assert entities.count(None) == 1 and len(entities) == 12
    assert all(e.endswith("Ada Lovelace wrote the first program.") for e in entities if e)
    assert [a.endswith(f"question {i}") for i, a in enumerate(answers)] == [True] * 6
    assert result["stats"].completed == 17 and result["stats"].failed == 1
    stats = threaded_server.stats
    assert stats.by_path["/v1/chat/completions"] == 18  # 401 is never retried
    bodies = [b for b in stats.bodies if isinstance(b, dict)]
    assert all(
        b["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
        for b in bodies
    )
    assert {(b["temperature"], b["top_p"]) for b in bodies} == {(0.0, 0.95)}  # GraphGen's
    assert sorted({b["max_tokens"] for b in bodies}) == [64, 4096]
    assert len(result["client"].token_usage) == 17
