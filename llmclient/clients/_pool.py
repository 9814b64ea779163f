"""What a client needs to drive an endpoint pool: one provider SDK per server, and probes.

Providers need no pool code: `_make_sdk` reads `self.settings.base_url`, so for a pool's
server it runs on a shallow copy of the client whose settings name that server.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from typing import TYPE_CHECKING, Any

from llmclient._loop_local import LoopLocal
from llmclient.config import public_url
from llmclient.limits import EndpointStats, PoolDispatcher
from llmclient.limits.pool import ROUTE, PoolMember

if TYPE_CHECKING:
    from llmclient.clients.base import BaseLLMClient

__all__ = ["SdkPerServer", "endpoint_stats", "ping_member"]

PING_TIMEOUT = 10.0  # seconds a probe of a server taken out may take


class SdkPerServer:
    """The provider SDK client of the pool server the running attempt was admitted to.

    One per server and event loop, made on first use; outside an attempt, the first server's.
    """

    __slots__ = ("_client", "_first", "_sdks")

    def __init__(self, client: BaseLLMClient, urls: tuple[str, ...]) -> None:
        self._client = client
        self._first = urls[0]
        self._sdks: dict[str, LoopLocal[Any]] = {
            url: LoopLocal(functools.partial(self._make, url), client._close_sdk) for url in urls
        }

    def _make(self, url: str) -> Any:
        client = self._client
        at_server = copy.copy(client)
        at_server.settings = client.settings.model_copy(update={"base_url": url})
        return at_server._make_sdk()

    def get(self) -> Any:
        """The SDK client for the running attempt's server, in the running loop."""
        member = ROUTE.get()
        url = member.url if member is not None and member.url in self._sdks else self._first
        return self._sdks[url].get()

    async def aclose(self) -> None:
        """Close every server's SDK client of the running loop."""
        for sdk in self._sdks.values():
            await sdk.aclose()


async def ping_member(client: BaseLLMClient, member: PoolMember) -> None:
    """Raise unless `member`'s server answers the provider's cheap request (`_ping`).

    A provider without `_ping` lets the server back in after the probe interval: the next
    request is the probe.
    """
    route = ROUTE.set(member)
    try:
        async with asyncio.timeout(min(client.profile.timeout, PING_TIMEOUT)):
            await client._ping()
        return
    except NotImplementedError:
        return
    except Exception as exc:
        error = client._pipeline.translate(exc, member.name)
        if error is None:
            raise
        failure = client._pipeline.chained(error, exc)
    finally:
        ROUTE.reset(route)
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
