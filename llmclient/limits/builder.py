"""`ClientLimits`: the limits side of one client, built from its settings.

A client hands its settings and two provider questions (how to ask a server its capacity,
how to ping one) to `ClientLimits`, which builds the admission the pipeline admits through:
one `Endpoint`, or a `PoolDispatcher` over one per server, once per event loop (asyncio
primitives belong to their loop). It also answers what the client reports of its limits:
`max_workers`, the concurrency limit now, and whether a request asks the server first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from llmclient._loop_local import LoopLocal
from llmclient.errors import ConfigurationError
from llmclient.limits.algorithms import FixedLimit, Limit
from llmclient.limits.backends import backend_for, public_url
from llmclient.limits.budget import RetryBudget
from llmclient.limits.endpoint import CapacityQuestion, Endpoint, endpoint_key, shared_endpoint
from llmclient.limits.pool import PoolDispatcher, PoolMember
from llmclient.profiles import ConcurrencyProfile, is_local_endpoint

if TYPE_CHECKING:
    from llmclient.config import ClientSettings

__all__ = ["ClientLimits"]

AskCapacity = Callable[[str], CapacityQuestion | None]
"""A provider's way to ask the server at a URL what it serves at once (None: it cannot)."""
Ping = Callable[[str], Awaitable[None]]
"""A provider's cheap request to the server at a URL; raises unless it answers."""


class ClientLimits:
    """One client's admission (an `Endpoint` or a `PoolDispatcher`) per event loop."""

    __slots__ = ("_admissions", "_ask_capacity", "_ping", "backend", "provider", "settings")

    def __init__(
        self, settings: ClientSettings, provider: str, ask_capacity: AskCapacity, ping: Ping
    ) -> None:
        self.settings = settings
        self.provider = provider
        self._ask_capacity = ask_capacity
        self._ping = ping
        self.backend = backend_for(settings.limits, settings.on_backend_error)
        self._admissions: LoopLocal[Endpoint | PoolDispatcher]
        if settings.pool is not None:
            self._check_pool_limits()
            self._admissions = LoopLocal(self._make_pool)
        else:
            self._admissions = LoopLocal(self._make_endpoint)

    @property
    def profile(self) -> ConcurrencyProfile:
        """The client's effective profile."""
        return self.settings.profile

    # ------------------------------------------------------------------ admissions
    def get(self) -> Endpoint | PoolDispatcher:
        """The running loop's admission, built on first use."""
        return self._admissions.get()

    def latest(self) -> Endpoint | PoolDispatcher | None:
        """The admission used last, in any loop (None before the first request)."""
        return self._admissions.latest()

    def current(self) -> Endpoint | PoolDispatcher | None:
        """The running loop's admission if it was built, else None."""
        return self._admissions.current()

    def endpoint_at(self, base_url: str | None = None) -> Endpoint | None:
        """The running loop's `Endpoint` of `base_url` (None: the client's own; in a pool,
        the server of that URL), if it was built."""
        target = self._admissions.current()
        if isinstance(target, PoolDispatcher):
            return next((m.endpoint for m in target.members if m.url == base_url), None)
        return target

    def _make_endpoint(
        self, url: str | None = None, profile: ConcurrencyProfile | None = None
    ) -> Endpoint:
        """The `Endpoint` of `url` (default: the base URL) under `profile` (default: ours)."""
        p = profile or self.profile
        url = url or self.settings.base_url
        name = public_url(url)
        budget = RetryBudget(p.retry.budget_tokens, p.retry.budget_refund)
        question = self._question(url, p)
        if not p.share_limits:
            endpoint = Endpoint.local(name, p.new_limit(), p.rpm, p.tpm, budget)
            if question is not None:
                endpoint.ask_server(question)
            return endpoint
        key = self.settings.api_key
        shared_key = endpoint_key(
            url, key.get_secret_value() if key else None, is_local_endpoint(url)
        )
        return shared_endpoint(
            shared_key, name, p.new_limit(), p.rpm, p.tpm, self.backend, budget, question
        )

    def _make_pool(self) -> PoolDispatcher:
        pool = self.settings.pool
        assert pool is not None
        servers = [
            (url, public_url(url), self._make_endpoint(url, self.server_profile(limit)))
            for url, limit in zip(pool.urls, pool.limits, strict=True)
        ]
        retry = self.profile.retry
        return PoolDispatcher(
            pool,
            servers,
            self._ping_member,
            provider=self.provider,
            budget=RetryBudget(retry.budget_tokens, retry.budget_refund),
            max_pause=retry.max_server_wait,
        )

    def _ping_member(self, member: PoolMember) -> Awaitable[None]:
        return self._ping(member.url)

    def _check_pool_limits(self) -> None:
        """One `Limit` instance cannot count the slots of two servers."""
        pool = self.settings.pool
        assert pool is not None
        specs = [self.server_profile(limit).max_concurrent for limit in pool.limits]
        instances = [id(spec) for spec in specs if isinstance(spec, Limit)]
        if len(instances) != len(set(instances)):
            raise ConfigurationError(
                "invalid argument: max_concurrent: one Limit instance serves several servers of "
                "the pool; pass a function that returns a new Limit, or one per server in "
                "EndpointPool({url: limit})"
            )

    def server_profile(self, max_concurrent: Any) -> ConcurrencyProfile:
        """The profile of one server of an endpoint pool (its own `max_concurrent`, if set)."""
        if max_concurrent is None:
            return self.profile
        return self.profile.model_copy(update={"max_concurrent": max_concurrent})

    # ------------------------------------------------------------------ discovery
    def capacity_question(self, url: str | None = None) -> CapacityQuestion | None:
        """The question a request to `url` (default: the base URL) first asks its server,
        what it serves at once; None when that server's limit is not a default (or `"auto"`)
        or `discover_limits` is off. A pool server with its own limit asks nothing."""
        url = url or self.settings.base_url
        pool = self.settings.pool
        own = None
        if pool is not None and url in pool.urls:
            own = pool.limits[pool.urls.index(url)]
        return self._question(url, self.server_profile(own))

    def _question(self, url: str, profile: ConcurrencyProfile) -> CapacityQuestion | None:
        if not profile.discover_limits:
            return None
        if profile.max_concurrent != "auto":
            if profile is not self.profile:
                return None  # a pool server's own max_concurrent
            if not self.settings.sources.get("max_concurrent", "").startswith("default"):
                return None
        return self._ask_capacity(url)

    async def discover(self) -> None:
        """Ask the servers now what they can take, where the limit is a default."""
        target = self.get()
        if isinstance(target, PoolDispatcher):
            endpoints = [member.endpoint for member in target.members]
        else:
            endpoints = [target]
        await asyncio.gather(*(endpoint.discover() for endpoint in endpoints))

    # ------------------------------------------------------------------ figures
    @property
    def max_workers(self) -> int:
        """The most requests the client can ever have on the wire (a pool's: the sum)."""
        pool = self.settings.pool
        latest = self._admissions.latest()
        if pool is None:
            return _workers(latest, self.profile)
        members = latest.members if isinstance(latest, PoolDispatcher) else None
        return sum(
            _workers(members[i].endpoint if members else None, self.server_profile(limit))
            for i, limit in enumerate(pool.limits)
        )

    @property
    def concurrency_limit(self) -> int:
        """The limit now (before the first request: the one it starts at)."""
        target = self._admissions.latest()
        if target is not None:
            return target.concurrency_limit
        pool = self.settings.pool
        if pool is not None:
            return sum(_first_limit(self.server_profile(limit)) for limit in pool.limits)
        return _first_limit(self.profile)

    async def aclose(self) -> None:
        """Close the running loop's admission: a pool's rechecks, each endpoint's connections."""
        target = self._admissions.current()
        if isinstance(target, PoolDispatcher):
            await target.aclose()
            for member in target.members:
                await member.endpoint.aclose()
        elif target is not None:
            await target.aclose()


def _workers(endpoint: Endpoint | PoolDispatcher | None, profile: ConcurrencyProfile) -> int:
    """The most requests `endpoint` may have on the wire: what its server said it can take
    when that replaced a fixed default, else what `profile` allows."""
    if (
        isinstance(endpoint, Endpoint)
        and endpoint.discovered is not None
        and isinstance(endpoint.limit, FixedLimit)
    ):
        return endpoint.concurrency_limit
    return profile.max_workers


def _first_limit(profile: ConcurrencyProfile) -> int:
    """The concurrency limit an endpoint starts at under `profile`."""
    spec = profile.max_concurrent
    return spec if isinstance(spec, int) else 1
