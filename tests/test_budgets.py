"""Token and cost budgets through the real SDKs against the simulator: a client's budget, a
helper call's, streams and embeddings, the environment, and the error itself."""

from __future__ import annotations

import asyncio
import math
import pickle
from typing import Any

import pytest

from llmclient import (
    AuthenticationError,
    BaseLLMClient,
    Budget,
    BudgetExceededError,
    BudgetTracker,
    ConfigurationError,
    ErrorKind,
    LLMError,
    OllamaClient,
    OpenAIClient,
    iterate_concurrent,
    run_concurrent,
    run_concurrent_sync,
)
from llmclient.testing import Fault, SimulatedServer
from tests.conftest import server_in_thread

PROVIDERS = ["ollama", "openai"]


def client_of(provider: str, server: SimulatedServer, **options: Any) -> BaseLLMClient:
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, **options)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, **options)


def chat_requests(server: SimulatedServer) -> int:
    return sum(n for path, n in server.stats.by_path.items() if "chat" in path)


def prompts(count: int) -> list[str]:
    return [f"question number {i}" for i in range(count)]


# ---------------------------------------------------------------------- the Budget itself


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("total_tokens", -1),
        ("prompt_tokens", math.nan),
        ("completion_tokens", math.inf),
        ("cost", -0.5),
        ("input_price", math.nan),
        ("total_tokens", 1.5),
    ],
)
def test_a_bad_cap_raises_naming_the_field_and_value(field: str, value: float) -> None:
    options: dict[str, Any] = {"total_tokens": 10, "cost": 1.0, "input_price": 1.0}
    options |= {"output_price": 1.0, field: value}
    with pytest.raises(ConfigurationError, match=rf"{field}={value!r}"):
        Budget(**options)


def test_a_budget_needs_a_cap_and_cost_needs_prices() -> None:
    with pytest.raises(ConfigurationError, match="at least one of total_tokens"):
        Budget(input_price=1.0)
    with pytest.raises(ConfigurationError, match=r"cost=2\.0: needs input_price and output_price"):
        Budget(cost=2, input_price=0.1)
    with pytest.raises(TypeError, match="total_tokens=True"):
        Budget(total_tokens=True)


def test_parse_reads_a_number_or_pairs_and_names_what_is_wrong() -> None:
    assert Budget.parse("1e6") == Budget(total_tokens=1_000_000)
    spec = "prompt-tokens=500, completion_tokens=2_000,cost=1,input_price=0.5,output_price=2"
    parsed = Budget.parse(spec, name="job")
    assert (parsed.prompt_tokens, parsed.completion_tokens, parsed.cost) == (500, 2000, 1.0)
    assert parsed.name == "job" and isinstance(parsed.prompt_tokens, int)
    with pytest.raises(ConfigurationError, match="unknown key 'tokens'"):
        Budget.parse("tokens=5")
    with pytest.raises(ConfigurationError, match="'lots' is not a number"):
        Budget.parse("total_tokens=lots")


def test_the_error_is_an_llm_error_kind_not_retried_and_pickles() -> None:
    error = BudgetExceededError("budget 'b' reached", budget=Budget(total_tokens=1))
    assert isinstance(error, LLMError) and error.kind is ErrorKind.BUDGET_EXCEEDED
    assert not error.retryable and error.fatal
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.budget == Budget(total_tokens=1)


# ---------------------------------------------------------------------- a client's budget


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_client_budget_stops_new_requests_and_counts_the_reported_usage(
    provider: str, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.01)
    budget = Budget(total_tokens=200, name="client")
    async with client_of(provider, server, budget=budget, max_tokens=10) as client:
        outcomes = await run_concurrent(client.generate_answer, prompts(40), return_exceptions=True)
        spent = await client.budget.spent()  # type: ignore[union-attr]
        stats = client.stats
    answered = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert len(answered) + len(refused) == 40 and answered and refused
    assert server.stats.completed == len(answered)  # the refused were never sent
    assert spent.total_tokens == stats.prompt_tokens + stats.completion_tokens  # settled
    assert spent.total_tokens <= 200 and spent.reserved_tokens == 0
    # the estimate is 5 + 10 tokens; the answers were cheaper, so more fit than 200 / 15
    assert len(answered) > 200 // 15
    assert "budget 'client' (total_tokens 200) reached: spent" in str(refused[0])
    assert refused[-1].spent.total_tokens <= 200


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_once_refused_every_later_request_is_refused_without_being_sent(
    provider: str, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with client_of(provider, server, budget=Budget(prompt_tokens=11)) as client:
        await client.generate_answer("a question of some length")  # 7 estimated, 5 used
        with pytest.raises(BudgetExceededError, match="would exceed it"):
            await client.generate_answer("a question of some length")
        with pytest.raises(BudgetExceededError, match="stopped after an earlier request"):
            await client.generate_answer("hi")  # would fit, but the budget has stopped
        assert client.budget is not None and client.budget.stopped
    assert chat_requests(server) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_cost_budget_charges_the_given_prices(
    provider: str, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(latency=0.0)
    budget = Budget(cost=0.02, input_price=100.0, output_price=400.0)  # per million tokens
    async with client_of(provider, server, budget=budget, max_tokens=8) as client:
        outcomes = await run_concurrent(client.generate_answer, prompts(30), return_exceptions=True)
        spent = await client.budget.spent()  # type: ignore[union-attr]
        stats = client.stats
    assert any(isinstance(o, BudgetExceededError) for o in outcomes)
    expected = (stats.prompt_tokens * 100.0 + stats.completion_tokens * 400.0) / 1e6
    assert spent.cost == pytest.approx(expected) and spent.cost <= 0.02


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_failed_call_is_charged_nothing(
    provider: str, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(latency=0.0)
    chat = "/api/chat" if provider == "ollama" else "/v1/chat"
    server.inject(Fault.INVALID_API_KEY, path=chat)
    async with client_of(provider, server, budget=Budget(total_tokens=1000)) as client:
        with pytest.raises(AuthenticationError):
            await client.generate_answer("hi")
        spent = await client.budget.spent()  # type: ignore[union-attr]
    assert spent.total_tokens == 0 and spent.reserved_tokens == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streams_are_reserved_then_settled_from_their_usage(
    provider: str, simulated_server_factory: Any
) -> None:
    # Ollama's stream ends with its usage; an OpenAI stream reports none (no include_usage),
    # so it is charged its estimate: "tell me" is 7 // 4 + 1 tokens, plus max_tokens
    server = await simulated_server_factory(latency=0.0)
    async with client_of(provider, server, budget=Budget(total_tokens=60)) as client:
        async with client.stream("tell me", max_tokens=5) as deltas:
            text = "".join([d async for d in deltas])
            usage = deltas.usage
        assert text
        spent = await client.budget.spent()  # type: ignore[union-attr]
        charged = usage.total_tokens if usage is not None else 2 + 5
        assert provider == "openai" or usage is not None
        assert spent.total_tokens == charged and spent.reserved_tokens == 0
        with pytest.raises(BudgetExceededError):
            async with client.stream("tell me", max_tokens=100) as deltas:
                _ = [d async for d in deltas]
    assert chat_requests(server) == 1


async def test_embeddings_are_charged_their_estimate(simulated_server_factory: Any) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with OllamaClient(
        "sim-model", host=server.url, embed_model="sim-embed", budget=Budget(prompt_tokens=25)
    ) as client:
        await client.embed(["x" * 40])  # 40 / 4 + 1 tokens
        await client.embed(["x" * 40])
        with pytest.raises(BudgetExceededError):
            await client.embed(["x" * 40])
        spent = await client.budget.spent()  # type: ignore[union-attr]
    assert spent.prompt_tokens == 22 and server.stats.embed_inputs == 2


async def test_a_tracker_passed_to_two_clients_is_one_count(
    simulated_server_factory: Any,
) -> None:
    server = await simulated_server_factory(latency=0.0)
    tracker = BudgetTracker(Budget(total_tokens=100))
    async with (
        OllamaClient("sim-model", host=server.url, budget=tracker, max_tokens=5) as a,
        OpenAIClient(
            "sim-model", base_url=server.openai_base_url, budget=tracker, max_tokens=5
        ) as b,
    ):
        assert a.budget is b.budget is tracker
        await a.generate_answer("one")
        await b.generate_answer("two")
        spent = await tracker.spent()
        assert spent.total_tokens == sum(
            c.stats.prompt_tokens + c.stats.completion_tokens for c in (a, b)
        )


# ---------------------------------------------------------------------- the environment


async def test_a_budget_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(latency=0.0)
    monkeypatch.setenv("LLMCLIENT_BUDGET_TOTAL_TOKENS", "1e3")
    monkeypatch.setenv("LLMCLIENT_BUDGET_NAME", "from-env")
    async with OllamaClient("sim-model", host=server.url) as client:
        assert client.budget is not None
        assert client.budget.budget == Budget(total_tokens=1000, name="from-env")
    monkeypatch.setenv("LLMCLIENT_BUDGET_COMPLETION_TOKENS", "-5")
    with pytest.raises(ConfigurationError, match="LLMCLIENT_BUDGET_COMPLETION_TOKENS=-5"):
        OllamaClient("sim-model", host=server.url)
    monkeypatch.setenv("LLMCLIENT_BUDGET_COMPLETION_TOKENS", "many")
    with pytest.raises(ConfigurationError, match="LLMCLIENT_BUDGET_COMPLETION_TOKENS='many'"):
        OllamaClient("sim-model", host=server.url)


def test_a_client_takes_only_a_budget_or_a_tracker() -> None:
    with pytest.raises(TypeError, match="budget=100"):
        OllamaClient("sim-model", budget=100)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- a helper call's budget


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_helper_budget_over_generate_answer_ends_every_item_once(
    provider: str, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.01)
    async with client_of(provider, server, max_tokens=10) as client:
        tracker = BudgetTracker(Budget(total_tokens=150, name="helper"))
        outcomes = await run_concurrent(
            client.generate_answer, prompts(30), return_exceptions=True, budget=tracker
        )
        spent = await tracker.spent()
        assert client.budget is None  # the client itself has no budget
        assert await client.generate_answer("after the run") == "Simulated reply to: after the run"
    answered = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert len(answered) + len(refused) == 30 and answered and refused
    assert len({id(o) for o in refused}) == len(refused)  # one error object per item
    assert server.stats.completed == len(answered) + 1
    assert spent.total_tokens <= 150


async def test_a_helper_budget_keeps_the_pool_sized_to_the_client(
    simulated_server_factory: Any,
) -> None:
    server = await simulated_server_factory(parallel=3, latency=0.02)
    async with OllamaClient("sim-model", host=server.url, max_concurrent=3) as client:
        await run_concurrent(
            client.generate_answer, prompts(12), budget=Budget(total_tokens=10_000)
        )
    assert server.stats.peak_in_flight == 3 and server.stats.completed == 12


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_without_return_exceptions_the_calls_in_flight_finish_then_it_raises(
    provider: str, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.01)
    finished = 0
    async with client_of(provider, server, max_tokens=10) as client:

        async def ask_then_work(prompt: str) -> str:
            nonlocal finished
            answer = await client.generate_answer(prompt)
            await asyncio.sleep(0.05)  # work on a paid-for answer: not to be thrown away
            finished += 1
            return answer

        with pytest.raises(BudgetExceededError):
            await run_concurrent(ask_then_work, prompts(30), budget=Budget(total_tokens=100))
        stats = client.stats
    assert finished == server.stats.completed == stats.completed > 0
    assert server.stats.disconnected == 0 and stats.failed == 0


async def test_a_helper_budget_counts_every_client_a_function_calls(
    simulated_server_factory: Any,
) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with (
        OllamaClient("sim-model", host=server.url, max_tokens=5) as a,
        OpenAIClient("sim-model", base_url=server.openai_base_url, max_tokens=5) as b,
    ):

        async def both(prompt: str) -> str:
            return await a.generate_answer(prompt) + await b.generate_answer(prompt)

        tracker = BudgetTracker(Budget(total_tokens=10_000))
        await run_concurrent(both, prompts(5), budget=tracker)
        spent = await tracker.spent()
        used = sum(c.stats.prompt_tokens + c.stats.completion_tokens for c in (a, b))
    assert spent.total_tokens == used > 0


async def test_iterate_concurrent_with_a_budget(simulated_server_factory: Any) -> None:
    server = await simulated_server_factory(latency=0.0)
    async with OllamaClient("sim-model", host=server.url, max_tokens=10) as client:
        seen = [
            outcome
            async for _, outcome in iterate_concurrent(
                client.generate_answer,
                prompts(20),
                return_exceptions=True,
                budget=Budget(total_tokens=100),
            )
        ]
    assert len(seen) == 20
    assert sum(isinstance(o, BudgetExceededError) for o in seen) == 20 - server.stats.completed


def test_run_concurrent_sync_with_a_budget() -> None:
    with server_in_thread(latency=0.0) as server:
        client = OllamaClient("sim-model", host=server.url, max_tokens=10)
        outcomes = run_concurrent_sync(
            client.generate_answer, prompts(20), failed_as_none=True, budget=Budget(total_tokens=80)
        )
    assert len(outcomes) == 20 and None in outcomes
    assert sum(o is not None for o in outcomes) == server.stats.completed


async def test_a_helper_budget_and_a_client_budget_both_count(
    simulated_server_factory: Any,
) -> None:
    server = await simulated_server_factory(latency=0.0)
    own = Budget(total_tokens=10_000, name="own")
    async with OllamaClient("sim-model", host=server.url, budget=own, max_tokens=5) as client:
        helper = BudgetTracker(Budget(total_tokens=10_000, name="helper"))
        await run_concurrent(client.generate_answer, prompts(4), budget=helper)
        await client.generate_answer("outside the helper")
        inside, total = await helper.spent(), await client.budget.spent()  # type: ignore[union-attr]
    assert 0 < inside.total_tokens < total.total_tokens


async def test_requests_wait_for_those_in_flight_before_being_refused(
    simulated_server_factory: Any,
) -> None:
    # estimates (5 + 50) reserve the whole budget at once; the answers use far less, so the
    # requests that wait for them to settle fit after all
    server = await simulated_server_factory(parallel=8, latency=0.02)
    async with OllamaClient("sim-model", host=server.url, max_tokens=50) as client:
        results = await run_concurrent(
            client.generate_answer,
            prompts(16),
            return_exceptions=True,
            budget=Budget(total_tokens=220),
        )
    assert sum(isinstance(r, str) for r in results) > 220 // 55
