"""A server that echoes the API key in its error answers never gets it into an llmclient error:
not its message, repr or traceback, not any exception it chains to (`__cause__` or
`__context__`, shown or not), not the logs; through the real SDKs against the simulator."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable

import pytest

from llmclient import (
    AuthenticationError,
    BaseLLMClient,
    ConcurrencyProfile,
    LLMConnectionError,
    LLMError,
    MalformedResponseError,
    OllamaClient,
    OpenAIClient,
    QuotaExceededError,
    RateLimitError,
    RetryPolicy,
    ServerBusyError,
    ServerError,
)
from llmclient.clients._servers import ping_server
from llmclient.limits import PoolDispatcher
from llmclient.testing import SimulatedServer

Factory = Callable[..., Awaitable[SimulatedServer]]
KEY = "sk-test-KEY-0123456789abcdef"
# Retried a little (tenacity runs), overload included, then the last error is raised.
RETRY = RetryPolicy(
    max_attempts=2, initial_wait=0.01, max_wait=0.02, jitter=0, max_elapsed=0.3, max_server_wait=1
)

# fault, streamed, the error it must be, its status code, whether its message had the key
CASES = [
    ("500", False, ServerError, 500, True),
    ("503", False, ServerBusyError, 503, True),
    ("503", True, ServerBusyError, 503, True),
    ("429", False, RateLimitError, 429, True),
    ("insufficient_quota", False, QuotaExceededError, 429, True),
    ("401", False, AuthenticationError, 401, True),
    ("401", True, AuthenticationError, 401, True),
    ("stream_error", False, ServerError, 500, True),
    ("stream_error", True, ServerError, None, True),  # the error event after some text
    ("html", False, MalformedResponseError, None, False),  # the key in a proxy's page
    ("html", True, MalformedResponseError, None, False),
    ("drop", False, LLMConnectionError, None, False),
    ("drop", True, LLMConnectionError, None, False),
]


def make(provider: str, server: SimulatedServer) -> BaseLLMClient:
    profile = ConcurrencyProfile(name="test", retry=RETRY)
    if provider == "ollama":  # OLLAMA_API_KEY: sent as a bearer token
        return OllamaClient("sim-model", host=server.url, api_key=KEY, profile=profile)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, api_key=KEY, profile=profile)


async def failure(client: BaseLLMClient, streamed: bool) -> LLMError:
    try:
        if streamed:
            async with client.stream("one two three four five six") as deltas:
                async for _ in deltas:
                    pass
        else:
            await client.generate("hi")
    except LLMError as error:
        return error
    raise AssertionError("the request succeeded")


def chain(error: BaseException) -> list[BaseException]:
    """Every exception reachable from `error` by `__cause__` and `__context__`."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        seen = todo.pop()
        if seen is not None and all(seen is not other for other in found):
            found.append(seen)
            todo += [seen.__cause__, seen.__context__]
    return found


@pytest.mark.parametrize("provider", ["ollama", "openai"])
@pytest.mark.parametrize(("fault", "streamed", "kind", "status", "echoed"), CASES)
async def test_an_echoed_key_is_nowhere_in_the_error_its_chain_or_the_logs(
    provider: str,
    fault: str,
    streamed: bool,
    kind: type[LLMError],
    status: int | None,
    echoed: bool,
    simulated_server_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    caplog.set_level(logging.DEBUG)
    async with make(provider, server) as client:
        server.inject(fault, count=100, retry_after=0.01, echo_key=True)
        error = await failure(client, streamed)
    assert isinstance(error, kind)  # still says what went wrong
    assert error.status_code == status
    assert status is None or f"(HTTP {status})" in str(error)
    assert ("***" in error.message) is echoed  # the server did echo it; it was scrubbed
    assert KEY not in "".join(traceback.format_exception(error))
    assert KEY not in repr(error)
    assert KEY not in caplog.text
    for linked in chain(error):
        assert KEY not in str(linked)
        assert KEY not in repr(linked.args)
        assert KEY not in repr(getattr(linked, "__dict__", {}))


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_a_pool_health_check_that_fails_chains_nothing_showing_the_key(
    provider: str, simulated_server_factory: Factory
) -> None:
    """The check raised its error `from None`, which hides `__context__` from tracebacks but
    keeps it: the SDK's exception, the echoed key in its body, was still reachable."""
    server = await simulated_server_factory(latency=0.001)
    other = await simulated_server_factory(latency=0.001)
    profile = ConcurrencyProfile(name="test", retry=RETRY)
    if provider == "ollama":
        client: BaseLLMClient = OllamaClient(
            "sim-model", host=[server.url, other.url], api_key=KEY, profile=profile
        )
    else:
        urls = [server.openai_base_url, other.openai_base_url]
        client = OpenAIClient("sim-model", base_url=urls, api_key=KEY, profile=profile)
    async with client:
        pool = client._admission.get()
        assert isinstance(pool, PoolDispatcher)
        server.inject("500", echo_key=True)
        with pytest.raises(ServerError) as caught:
            await ping_server(client, pool.members[0].url)
    assert "***" in caught.value.message
    for linked in chain(caught.value):
        assert KEY not in str(linked)
        assert KEY not in repr(linked.args)
        assert KEY not in repr(getattr(linked, "__dict__", {}))
