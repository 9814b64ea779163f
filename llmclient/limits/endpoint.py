"""The shared state of one endpoint (slots, rate buckets, pause) and the per-process registry.

Clients of the same endpoint in one event loop share one `Endpoint`, so a second client
cannot double the load on a server; the registry is kept per event loop because asyncio
primitives belong to the loop that created them.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Hashable
from typing import TypeVar

from llmclient.limits.adaptive import LatencyLimit
from llmclient.limits.concurrency import ConcurrencyLimiter
from llmclient.limits.rate import RateLimits

__all__ = ["Endpoint", "shared_endpoint"]

logger = logging.getLogger("llmclient")
_N = TypeVar("_N", int, float)


class Endpoint:
    """Admission control for one server: pause gate, then rate buckets, then a slot."""

    __slots__ = ("_resume_at", "adaptive", "concurrency", "name", "rate")

    def __init__(
        self,
        name: str,
        max_concurrent: int | str,
        rpm: float | None,
        tpm: int | None,
        adaptive_max: int = 64,
    ) -> None:
        self.name = name
        if isinstance(max_concurrent, int):
            self.adaptive: LatencyLimit | None = None
            self.concurrency = ConcurrencyLimiter(max_concurrent)
        else:
            self.adaptive = LatencyLimit(initial=1, max_limit=adaptive_max)
            self.concurrency = ConcurrencyLimiter(self.adaptive.limit)
        self.rate = RateLimits(rpm, tpm)
        self._resume_at = 0.0

    async def admit(self, estimated_tokens: int) -> float:
        """Wait until a request may go on the wire; return the tokens charged to tpm."""
        loop = asyncio.get_running_loop()
        await self._wait_pause(loop)
        charge = await self.rate.acquire(estimated_tokens) if self.rate.active else 0.0
        while True:
            await self.concurrency.acquire()
            if self._resume_at <= loop.time():
                return charge
            self.concurrency.release()  # a pause began while we waited: do not hold a slot
            await self._wait_pause(loop)

    def release(self, rtt: float, dropped: bool, sample: bool = True) -> None:
        """Give the slot back; with an adaptive limit, let the request's latency steer it.

        `dropped` marks a refusal or timeout from overload; `sample=False` keeps a request
        that failed for another reason (a 400, say) out of the adaptive limit's view.
        """
        if self.adaptive is not None and sample:
            limit = self.adaptive.on_sample(rtt, self.concurrency.in_flight, dropped)
            if limit != self.concurrency.limit:
                logger.debug("%s: adaptive concurrency limit now %d", self.name, limit)
                self.concurrency.limit = limit
        self.concurrency.release()

    def pause(self, seconds: float) -> None:
        """Hold back new dispatch to this endpoint for `seconds` (a 429's Retry-After)."""
        resume_at = asyncio.get_running_loop().time() + seconds
        if resume_at > self._resume_at:
            self._resume_at = resume_at
            logger.warning("%s: pausing new requests for %.2fs (server asked)", self.name, seconds)

    async def _wait_pause(self, loop: asyncio.AbstractEventLoop) -> None:
        # A deadline that may move later while we sleep, not an event: re-check after each sleep.
        while (delay := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def tighten(self, max_concurrent: int | str, rpm: float | None, tpm: int | None) -> None:
        """Apply a stricter setting from another client of the same endpoint (never loosen)."""
        if not isinstance(max_concurrent, int):
            pass  # "auto" beside a fixed limit: the fixed one stays
        elif self.adaptive is not None:
            self.adaptive.max_limit = min(self.adaptive.max_limit, max_concurrent)
            self.adaptive.limit = min(self.adaptive.limit, max_concurrent)
            self.concurrency.limit = min(self.concurrency.limit, max_concurrent)
        elif max_concurrent < self.concurrency.limit:
            logger.warning(
                "%s: clients share this endpoint with different max_concurrent; using %d "
                "(pass share_limits=False to keep separate limits)",
                self.name,
                max_concurrent,
            )
            self.concurrency.limit = max_concurrent
        current_rpm = self.rate.rpm.max_rate if self.rate.rpm else None
        current_tpm = int(self.rate.tpm.max_rate) if self.rate.tpm else None
        stricter = (_stricter(rpm, current_rpm), _stricter(tpm, current_tpm))
        if stricter != (current_rpm, current_tpm):
            logger.warning(
                "%s: clients share this endpoint; rate limits now rpm=%s tpm=%s",
                self.name,
                *stricter,
            )
            self.rate = RateLimits(*stricter)


def _stricter(mine: _N | None, theirs: _N | None) -> _N | None:
    if mine is None or theirs is None:
        return theirs if mine is None else mine
    return min(mine, theirs)


_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Endpoint]] = (
    weakref.WeakKeyDictionary()
)


def shared_endpoint(
    key: Hashable,
    name: str,
    max_concurrent: int | str,
    rpm: float | None,
    tpm: int | None,
    adaptive_max: int = 64,
) -> Endpoint:
    """The running loop's `Endpoint` for `key`, created on first use."""
    endpoints = _registry.setdefault(asyncio.get_running_loop(), {})
    endpoint = endpoints.get(key)
    if endpoint is None:
        endpoint = endpoints[key] = Endpoint(name, max_concurrent, rpm, tpm, adaptive_max)
    else:
        endpoint.tighten(max_concurrent, rpm, tpm)
    return endpoint
