"""Rate-limit headers: parsing them, and pacing dispatch by them against the simulated server."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmclient import OllamaClient, OpenAIClient, run_concurrent
from llmclient.limits import PoolDispatcher
from llmclient.limits.headers import Quota, ServerRates, parse_go_duration, parse_rate_headers
from llmclient.limits.pacing import ServerPacing
from llmclient.testing.pytest_plugin import ServerFactory
from tests.conftest import FAST_RETRY

# 10 requests per sliding second: a scaled-down rpm account.
RPM_SERVER = {"rpm": 10, "rpm_window": 1.0, "latency": 0.01, "parallel": 4}


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("1.5µs", 0.0000015),
        ("0s", 0.0),
        ("2", 2.0),
        (" 7.5 ", 7.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1s2", "m1s", "-1s", "1s 2s", "soon"])
def test_not_go_durations(text: str) -> None:
    assert parse_go_duration(text) is None


def test_openai_headers_both_units_any_case() -> None:
    limits = parse_rate_headers(
        {
            "X-RateLimit-Limit-Requests": "500",
            "X-RateLimit-Remaining-Requests": "499",
            "X-RateLimit-Reset-Requests": "120ms",
            "X-RateLimit-Limit-Tokens": "30000",
            "X-RateLimit-Remaining-Tokens": "29000",
            "X-RateLimit-Reset-Tokens": "2s",
        }
    )
    assert limits == ServerRates(Quota(499, 0.12, 500), Quota(29000, 2.0, 30000))


def test_ietf_policies_pick_the_binding_one_per_unit() -> None:
    limits = parse_rate_headers(
        {
            "RateLimit-Policy": '"minute";q=100;w=60, "day";q=1000;w=86400, '
            '"tok";q=5000;w=60;qu="tokens"',
            "RateLimit": '"minute";r=90;t=30, "day";r=2;t=3600, "tok";r=100;t=10',
        }
    )
    assert limits is not None
    assert limits.requests == Quota(2, 3600, 1000)  # 2 in an hour binds before 90 in 30 s
    assert limits.tokens == Quota(100, 10, 5000)


def test_older_ietf_forms() -> None:
    dictionary = parse_rate_headers({"RateLimit": "limit=10, remaining=3, reset=7"})
    triple = parse_rate_headers(
        {"RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "7"}
    )
    assert dictionary == triple == ServerRates(Quota(3, 7, 10), None)


def test_unusable_values_are_ignored() -> None:
    assert parse_rate_headers({"x-ratelimit-remaining-requests": "many"}) is None
    assert parse_rate_headers({"RateLimit": '"default";t=3'}) is None  # no remaining
    odd_reset = parse_rate_headers(
        {"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "later"}
    )
    assert odd_reset == ServerRates(Quota(5, None, None), None)


# --- pacing in isolation -------------------------------------------------------------------------


async def test_pacing_waits_for_the_reset_when_nothing_is_left() -> None:
    pacing = ServerPacing()
    await pacing.wait(0)  # nothing announced yet: no wait
    pacing.observe(ServerRates(Quota(remaining=0, reset=0.3)))
    pacing.done()
    started = time.monotonic()
    await pacing.wait(0)
    assert time.monotonic() - started >= 0.25


async def test_pacing_lets_through_what_the_quota_covers_at_once() -> None:
    pacing = ServerPacing()
    await pacing.wait(0)
    pacing.observe(ServerRates(Quota(remaining=5, reset=60)))
    pacing.done()
    async with asyncio.timeout(30):  # a wait for the reset would take a minute
        for _ in range(5):
            await pacing.wait(0)
    assert pacing.in_flight == 5


async def test_pacing_counts_requests_on_the_wire_against_the_quota() -> None:
    pacing = ServerPacing()
    for _ in range(3):
        await pacing.wait(0)
    pacing.observe(ServerRates(Quota(remaining=2, reset=0.3)))  # two others may not be counted
    started = time.monotonic()
    await pacing.wait(0)
    assert time.monotonic() - started >= 0.25


async def test_tokens_quota_paces_by_the_estimate() -> None:
    pacing = ServerPacing(pace_requests=False)
    await pacing.wait(100)
    pacing.observe(ServerRates(Quota(1000, 60), Quota(remaining=50, reset=0.3)))
    pacing.done()
    started = time.monotonic()
    await pacing.wait(100)  # 100 tokens do not fit in the 50 left
    assert time.monotonic() - started >= 0.25


# --- against the simulated rpm-limited server ----------------------------------------------------


@pytest.mark.parametrize("headers", ["openai", "ietf", "both"])
async def test_header_pacing_keeps_429s_within_bound(
    simulated_server_factory: ServerFactory, headers: str
) -> None:
    server = await simulated_server_factory(**RPM_SERVER, rate_headers=headers)
    async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
        answers = await run_concurrent(
            client.generate_answer, [f"q{i}" for i in range(30)], progress_bar=False
        )
    assert len(answers) == 30
    assert server.stats.completed == 30
    assert server.stats.statuses[429] <= 2


async def test_header_pacing_spreads_a_crowd(simulated_server_factory: ServerFactory) -> None:
    """Thirty callers at once (more than the slots): the quota is spread, not overrun."""
    server = await simulated_server_factory(**RPM_SERVER)
    async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
        await asyncio.gather(*(client.generate_answer(f"q{i}") for i in range(30)))
    assert server.stats.completed == 30
    assert server.stats.statuses[429] <= 2


async def test_without_headers_the_limit_is_found_by_hitting_it(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(**RPM_SERVER, rate_headers="none")
    async with OpenAIClient(
        "sim-model", base_url=server.openai_base_url, max_attempts=FAST_RETRY.max_attempts
    ) as client:
        await run_concurrent(
            client.generate_answer, [f"q{i}" for i in range(30)], progress_bar=False
        )
    assert server.stats.completed == 30
    assert server.stats.statuses[429] >= 1


async def test_a_configured_rpm_turns_request_pacing_off(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(**RPM_SERVER)
    async with OpenAIClient("sim-model", base_url=server.openai_base_url, rpm=600) as client:
        await client.generate_answer("q")
        endpoint = client._admission.latest()
        assert endpoint is not None
        assert not endpoint.pacing.pace_requests
        assert endpoint.pacing.pace_tokens


async def test_ollama_client_learns_from_a_proxys_429(
    simulated_server_factory: ServerFactory,
) -> None:
    """A proxy in front of Ollama answers 429 with x-ratelimit headers: the client reads them."""
    server = await simulated_server_factory(latency=0.001)
    async with OllamaClient("sim-model", host=server.url, profile=None) as client:
        await client.generate_answer("first")
        server.inject("429", retry_after=0.2)
        await client.generate_answer("limited, then retried")
        endpoint = client._admission.latest()
        assert endpoint is not None
        assert endpoint.pacing.active
    assert server.stats.statuses[429] == 1


async def test_a_long_reset_holds_requests_back_no_longer_than_max_server_wait() -> None:
    pacing = ServerPacing()
    await pacing.wait(0)
    pacing.observe(ServerRates(Quota(remaining=0, reset=86400)), max_wait=0.2)
    pacing.done()
    async with asyncio.timeout(30):  # a day otherwise
        await pacing.wait(0)


async def test_each_server_of_a_pool_paces_by_its_own_headers(
    simulated_server_factory: ServerFactory,
) -> None:
    """Headers pace the pool server that sent them, not the pool's other servers."""
    limited = await simulated_server_factory(**RPM_SERVER)
    free = await simulated_server_factory(latency=0.001)
    urls = [limited.openai_base_url, free.openai_base_url]
    async with OpenAIClient("sim-model", base_url=urls) as client:
        await run_concurrent(
            client.generate_answer, [f"q{i}" for i in range(20)], progress_bar=False
        )
        pool = client._admission.latest()
        assert isinstance(pool, PoolDispatcher)
        by_url = {member.url: member.endpoint.pacing.active for member in pool.members}
    assert limited.stats.completed >= 1  # both servers served, so both could have spoken
    assert free.stats.completed >= 1
    assert by_url == {limited.openai_base_url: True, free.openai_base_url: False}


async def test_learn_limits_is_the_old_name_of_learn_rates(
    simulated_server_factory: ServerFactory,
) -> None:
    """Providers written for `_learn_limits` still pace by what the server announced."""
    server = await simulated_server_factory(latency=0.001)
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "30s",
    }
    async with OllamaClient("sim-model", host=server.url, profile=None) as client:
        await client.generate_answer("first")
        endpoint = client._admission.latest()
        assert endpoint is not None and not endpoint.pacing.active
        client._learn_limits(headers)
        assert endpoint.pacing.active
