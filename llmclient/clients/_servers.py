"""What a client needs to drive an endpoint pool: one provider SDK per server, and pings.

A pool's attempt names its server (the admission ticket's `base_url`): the client's
primitives get it as `base_url=`, and `_sdk_at(base_url)` picks that server's SDK client,
made by `_make_sdk(base_url=url)`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from llmclient._loop_local import LoopLocal
from llmclient.config import public_url
from llmclient.limits import EndpointStats, PoolDispatcher

if TYPE_CHECKING:
    from llmclient.clients.base import BaseLLMClient

__all__ = ["SdkPerServer", "endpoint_stats", "ping_server"]

PING_TIMEOUT = 10.0  # seconds a check of a server taken out may take


class SdkPerServer:
    """A client's provider SDK clients: one per event loop for its base URL and, in an
    endpoint pool, one per server URL (`make(base_url=url)`), each made on first use."""

    __slots__ = ("_own", "_servers")

    def __init__(
        self,
        make: Callable[..., Any],
        close: Callable[[Any], Awaitable[None]],
        urls: tuple[str, ...] = (),
    ) -> None:
        self._servers: dict[str, LoopLocal[Any]] = {
            url: LoopLocal(functools.partial(make, base_url=url), close) for url in urls
        }
        # outside a pool the client's own; in one, its first server's
        self._own = self._servers[urls[0]] if urls else LoopLocal(make, close)

    def get(self, base_url: str | None = None) -> Any:
        """The SDK client for `base_url` (None: the client's own) in the running loop."""
        if base_url is None:
            return self._own.get()
        return self._servers[base_url].get()

    def latest(self) -> Any:
        """The client's own SDK client used last, in any loop (None before any)."""
        return self._own.latest()

    async def aclose(self) -> None:
        """Close every server's SDK client of the running loop."""
        await self._own.aclose()
        for sdk in self._servers.values():
            if sdk is not self._own:
                await sdk.aclose()


async def ping_server(client: BaseLLMClient, url: str) -> None:
    """Raise unless the pool server at `url` answers the provider's cheap request (`_ping`).

    A provider without `_ping` lets the server back in after the recheck interval: the next
    request is the check.
    """
    try:
        async with asyncio.timeout(min(client.profile.timeout, PING_TIMEOUT)):
            await client._ping(base_url=url)
        return
    except NotImplementedError:
        return
    except Exception as exc:
        error = client._pipeline.translate(exc, public_url(url))
        if error is None:
            raise
        failure = client._pipeline.chained(error, exc)
    raise failure  # outside `except`: no hidden __context__ (it may show the API key)


def endpoint_stats(client: BaseLLMClient, target: object) -> dict[str, EndpointStats]:
    """Each server's health and attempts: a running pool's, else from the settings and stats."""
    if isinstance(target, PoolDispatcher):
        return target.stats()
    pool = client.settings.pool
    if pool is not None:  # no request made yet
        return {
            public_url(url): EndpointStats(public_url(url), True, None, 0, 0, 0, 0, None, None)
            for url in pool.urls
        }
    stats = client.stats
    name = client.endpoint_name
    return {
        name: EndpointStats(
            url=name,
            healthy=True,
            problem=None,
            in_flight=stats.in_flight,
            concurrency_limit=stats.concurrency_limit,
            answered=stats.completed,
            failed=stats.failed + stats.retries,
            latency_p50=stats.latency_p50,
            latency_p95=stats.latency_p95,
        )
    }
