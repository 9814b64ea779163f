"""One server's admission control (`Endpoint`) and the per-process registry that shares it.

An `Endpoint` joins a `Limit` (how many), a backend's `EndpointState` (where slots, buckets
and pause live) and the order of admission: pause gate, then rate buckets, then a slot.
Clients of the same endpoint in one event loop share one `Endpoint`, so a second client
cannot double the load on a server; the registry is per event loop because asyncio
primitives belong to the loop that created them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import weakref
from collections.abc import Hashable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from llmclient.limits.algorithms import FixedLimit, Limit, Outcome
from llmclient.limits.backends import LOCAL, EndpointState, LimitBackend
from llmclient.limits.budget import RetryBudget
from llmclient.limits.headers import parse_rate_headers
from llmclient.limits.pacing import ServerPacing

__all__ = ["Endpoint", "endpoint_key", "shared_endpoint"]

logger = logging.getLogger("llmclient")
_N = TypeVar("_N", int, float)


class Endpoint:
    """Admission control for one server: pause gate, rate buckets, a slot, then the pacing
    the server's rate-limit headers call for."""

    __slots__ = ("_cap", "_rpm", "_tpm", "budget", "limit", "name", "pacing", "state")

    def __init__(
        self,
        name: str,
        limit: Limit,
        state: EndpointState,
        rpm: float | None = None,
        tpm: int | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.name = name
        self.limit = limit
        self.state = state
        self.budget = budget if budget is not None else RetryBudget()
        self._cap = limit.max_limit
        self._rpm, self._tpm = rpm, tpm
        self.pacing = ServerPacing(pace_requests=rpm is None, pace_tokens=tpm is None)

    @classmethod
    def local(
        cls,
        name: str,
        limit: Limit,
        rpm: float | None = None,
        tpm: int | None = None,
        budget: RetryBudget | None = None,
    ) -> Endpoint:
        """An endpoint whose state lives in this process only."""
        return cls(name, limit, LOCAL.state(name, limit.limit, rpm, tpm), rpm, tpm, budget)

    @property
    def concurrency_limit(self) -> int:
        """How many requests may be on the wire at once now."""
        return min(self.limit.limit, self._cap)

    async def admit(self, estimated_tokens: int) -> tuple[object, float]:
        """Wait until a request may go on the wire; return its slot lease and tpm charge."""
        state = self.state
        await self._wait_pause()
        charge = await state.reserve(estimated_tokens) if state.rates_active else 0.0
        while True:
            lease = await state.acquire_slot()
            if await state.paused_for() <= 0:
                break
            state.release_slot(lease)  # a pause began while we waited: do not hold a slot
            await self._wait_pause()
        try:
            await self.pacing.wait(estimated_tokens)  # last, so it sees who is about to send
        except BaseException:
            state.release_slot(lease)
            raise
        return lease, charge

    def release(self, lease: object, rtt: float, outcome: Outcome) -> None:
        """Give the slot back and let the outcome steer the limit."""
        state = self.state
        before = self.concurrency_limit
        self.limit.on_sample(rtt, state.in_flight, outcome)
        after = self.concurrency_limit
        if after != before:
            logger.debug("%s: concurrency limit now %d", self.name, after)
            state.set_limit(after)
        state.release_slot(lease)
        self.pacing.done()

    def learn(self, headers: Mapping[str, str], max_wait: float = math.inf) -> None:
        """Pace by the rate-limit headers of a response (quotas no rpm or tpm setting covers),
        holding no request back longer than `max_wait` seconds."""
        limits = parse_rate_headers(headers)
        if limits is not None:
            self.pacing.observe(limits, max_wait)

    def settle(self, charged: float, used_tokens: int | None) -> None:
        """Correct the tpm charge with the usage the provider reported."""
        if charged and used_tokens is not None:
            self.state.settle(charged, used_tokens)

    def pause(self, seconds: float) -> None:
        """Hold back new dispatch to this endpoint for `seconds` (a 429's Retry-After)."""
        logger.warning("%s: pausing new requests for %.2fs (server asked)", self.name, seconds)
        self.state.pause(seconds)

    async def aclose(self) -> None:
        """Close the state's connections, if it has any (a remote backend's)."""
        close = getattr(self.state, "aclose", None)
        if close is not None:
            await close()

    async def _wait_pause(self) -> None:
        # A deadline that may move later while we sleep, not an event: re-check after each sleep.
        while (delay := await self.state.paused_for()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def tighten(self, max_concurrent: int | None, rpm: float | None, tpm: int | None) -> None:
        """Apply a stricter setting from another client of the same endpoint (never loosen)."""
        if max_concurrent is not None and max_concurrent < self._cap:
            if isinstance(self.limit, FixedLimit):
                logger.warning(
                    "%s: clients share this endpoint with different max_concurrent; using %d "
                    "(pass share_limits=False to keep separate limits)",
                    self.name,
                    max_concurrent,
                )
            self._cap = max_concurrent
            self.state.set_limit(self.concurrency_limit)
        stricter = (_stricter(rpm, self._rpm), _stricter(tpm, self._tpm))
        if stricter != (self._rpm, self._tpm):
            logger.warning(
                "%s: clients share this endpoint; rate limits now rpm=%s tpm=%s",
                self.name,
                *stricter,
            )
            self._rpm, self._tpm = stricter
            self.state.set_rates(*stricter)
            self.pacing.pace_requests, self.pacing.pace_tokens = (r is None for r in stricter)


def _stricter(mine: _N | None, theirs: _N | None) -> _N | None:
    if mine is None or theirs is None:
        return theirs if mine is None else mine
    return min(mine, theirs)


def endpoint_key(base_url: str, api_key: str | None, local: bool) -> tuple[str, ...]:
    """Clients with equal keys share limits: same server, and same account for clouds.

    >>> endpoint_key("http://127.0.0.1:11434", None, True)
    ('http://127.0.0.1:11434',)
    >>> len(endpoint_key("https://api.openai.com/v1", "sk-secret", False)[1])
    16
    """
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
    if api_key is None or local:
        return (origin,)
    return (origin, hashlib.sha256(api_key.encode()).hexdigest()[:16])


_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Endpoint]] = (
    weakref.WeakKeyDictionary()
)


def shared_endpoint(
    key: Hashable,
    name: str,
    new_limit: Limit,
    rpm: float | None,
    tpm: int | None,
    backend: LimitBackend = LOCAL,
    budget: RetryBudget | None = None,
) -> Endpoint:
    """The running loop's `Endpoint` for `key`, created with `new_limit` on first use.

    A later client of the same key with a fixed limit below the current one lowers it.
    """
    endpoints = _registry.setdefault(asyncio.get_running_loop(), {})
    endpoint = endpoints.get((backend, key))
    if endpoint is None:
        limit = backend.share(key, new_limit)
        state = backend.state(key, limit.limit, rpm, tpm)
        endpoint = Endpoint(name, limit, state, rpm, tpm, budget)
        endpoints[(backend, key)] = endpoint
    else:
        fixed = new_limit.limit if isinstance(new_limit, FixedLimit) else None
        endpoint.tighten(fixed, rpm, tpm)
    return endpoint
