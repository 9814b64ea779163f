"""The retry policy's test mode and Retry-After parsing, through the real SDKs over loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest

from llmclient import ConcurrencyProfile, OllamaClient, RetryPolicy, ServerError
from llmclient.retry import is_testing, set_testing
from llmclient.testing import SimulatedServer

Factory = Callable[..., Awaitable[SimulatedServer]]
SLOW = ConcurrencyProfile(
    name="slow-backoff", retry=RetryPolicy(max_attempts=5, initial_wait=30, max_wait=60)
)


@pytest.fixture
def testing_mode() -> Iterator[None]:
    yield
    set_testing(False)


async def test_testing_mode_skips_backoff_and_caps_attempts(
    simulated_server_factory: Factory, testing_mode: None
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("500", count=5)
    set_testing(True, attempts=3)
    assert is_testing()
    async with OllamaClient("sim-model", host=server.url, profile=SLOW) as client:
        with pytest.raises(ServerError) as caught:
            await client.generate_answer("hi")
    # Three attempts reached the server, none waited 30 s (the test would time out).
    assert server.stats.statuses[500] == 3
    assert caught.value.attempts == 3


async def test_testing_mode_without_cap_keeps_the_policy_attempts(
    simulated_server_factory: Factory, testing_mode: None
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject("500", count=4)
    set_testing(True)
    async with OllamaClient("sim-model", host=server.url, profile=SLOW) as client:
        assert await client.generate_answer("hi") == "Simulated reply to: hi"
    assert server.stats.statuses[500] == 4


@pytest.mark.parametrize("attempts", [0, -1])
def test_testing_mode_refuses_bad_attempts(attempts: int) -> None:
    with pytest.raises(ValueError, match=f"attempts={attempts}"):
        set_testing(True, attempts=attempts)
    assert not is_testing()


def test_testing_mode_refuses_non_int_attempts() -> None:
    with pytest.raises(TypeError, match="attempts='2'"):
        set_testing(True, attempts="2")  # type: ignore[arg-type]
