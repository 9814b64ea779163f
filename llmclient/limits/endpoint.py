"""One server's admission control (`Endpoint`) and the per-process registry that shares it.

An `Endpoint` joins a `Limit` (how many), a backend's `EndpointState` (where slots, buckets
and pause live) and the order of admission: pause gate, then rate buckets, then a slot.
Clients of the same endpoint in one event loop share one `Endpoint`, so a second client
cannot double the load on a server. The registry is per event loop because asyncio
primitives belong to the loop that created them; the backend shares slots, pause and an
adaptive limit between the loops (the local backend per process, Redis per fleet).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from llmclient.limits.admission import EndpointTicket
from llmclient.limits.algorithms import FixedLimit, LatencyLimit, Limit, Outcome
from llmclient.limits.backends import LOCAL, EndpointState, LimitBackend, LocalState
from llmclient.limits.budget import RetryBudget
from llmclient.limits.discovery import ServerCapacity
from llmclient.limits.headers import parse_rate_headers
from llmclient.limits.pacing import ServerPacing

__all__ = ["CapacityProbe", "CapacityQuestion", "Endpoint", "endpoint_key", "shared_endpoint"]

CapacityQuestion = Callable[[], Awaitable[ServerCapacity | None]]
"""Asks the server once how many requests it serves at once (None: it does not say)."""

CapacityProbe = CapacityQuestion
"""The old name of `CapacityQuestion`."""

logger = logging.getLogger("llmclient")
_SAMPLES = threading.Lock()
_N = TypeVar("_N", int, float)


class Endpoint:
    """Admission control for one server: pause gate, rate buckets, a slot, then the pacing
    the server's rate-limit headers call for."""

    __slots__ = (
        "_cap",
        "_discovery",
        "_given_cap",
        "_question",
        "_rpm",
        "_tpm",
        "budget",
        "discovered",
        "limit",
        "name",
        "pacing",
        "state",
    )

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
        self._question: CapacityQuestion | None = None
        self._discovery: asyncio.Task[None] | None = None
        self._given_cap: int | None = None  # the lowest max_concurrent a client gave
        self.discovered: ServerCapacity | None = None  # what the server said it can take

    @classmethod
    def local(
        cls,
        name: str,
        limit: Limit,
        rpm: float | None = None,
        tpm: int | None = None,
        budget: RetryBudget | None = None,
    ) -> Endpoint:
        """An endpoint whose state is its own (shared with no other client)."""
        return cls(name, limit, LocalState(limit.limit, rpm, tpm), rpm, tpm, budget)

    @property
    def concurrency_limit(self) -> int:
        """How many requests may be on the wire at once now."""
        return min(self.limit.limit, self._cap)

    def ask_server(self, question: CapacityQuestion) -> None:
        """Before the first admission, ask the server what it can take (`question`, once) and
        start the limit there: the limit is a default, not one a client gave."""
        if self._discovery is None:
            self._question = question

    async def discover(self) -> None:
        """Run the server question `ask_server` set up, once; every caller waits for it."""
        if self._question is None and self._discovery is None:
            return
        if self._discovery is None:
            question, self._question = self._question, None
            assert question is not None
            self._discovery = asyncio.ensure_future(self._ask(question))
        await asyncio.shield(self._discovery)

    async def _ask(self, question: CapacityQuestion) -> None:
        try:
            capacity = await question()
        except Exception as exc:  # a server that cannot say keeps the profile's default
            logger.info("%s: could not ask the server what it can take (%r)", self.name, exc)
            return
        if capacity is None:
            logger.info(
                "%s: the server did not say what it can take; max_concurrent stays %d",
                self.name,
                self.concurrency_limit,
            )
            return
        self.discovered = capacity
        if capacity.reported is not None:
            logger.warning(
                "%s: the server says it serves %d requests at once; taking %d, the profile's "
                "adaptive_max (raise it in the profile to take more)",
                self.name,
                capacity.reported,
                capacity.slots,
            )
        _start_at(self.limit, capacity.slots)
        if isinstance(self.limit, FixedLimit):
            self.limit = FixedLimit(capacity.slots)
            self._cap = capacity.slots
        if self._given_cap is not None:
            self._cap = min(self._cap, self._given_cap)
        self.state.set_limit(self.concurrency_limit)
        logger.info(
            "%s: max_concurrent %d, from the server (%s)",
            self.name,
            self.concurrency_limit,
            capacity.source,
        )

    async def acquire(self, estimated_tokens: int) -> tuple[object, float]:
        """Wait until a request may go on the wire; return its slot lease and tpm charge
        (to give back with `release`)."""
        ticket = await self.admit(estimated_tokens)
        return ticket.lease, ticket.charge

    async def admit(self, estimated_tokens: int, max_pause: float = math.inf) -> EndpointTicket:
        """Wait until a request may go on the wire; return its ticket (see `Admission`)."""
        discovery = self._discovery
        if self._question is not None or (discovery is not None and not discovery.done()):
            await self.discover()  # once: later admissions do not touch the finished task
        state = self.state
        if state.pause_left() != 0.0:  # unknown (a remote state) or paused: wait it out
            await self._wait_pause()
        charge = await state.reserve(estimated_tokens) if state.rates_active else 0.0
        while True:
            lease = await state.acquire_slot()
            left = state.pause_left()
            if (await state.paused_for() if left is None else left) <= 0:
                break
            state.release_slot(lease)  # a pause began while we waited: do not hold a slot
            await self._wait_pause()
        try:
            await self.pacing.wait(estimated_tokens)  # last, so it sees who is about to send
        except BaseException:
            state.release_slot(lease)
            raise
        return EndpointTicket(self, lease, charge, max_pause)

    def release(self, lease: object, rtt: float, outcome: Outcome) -> None:
        """Give the slot back and let the outcome steer the limit."""
        state = self.state
        limit = self.limit
        if type(limit) is not FixedLimit:  # a fixed limit learns nothing from a sample
            before = self.concurrency_limit
            with _SAMPLES:  # one limit may be steered from several threads' loops
                limit.on_sample(rtt, state.in_flight, outcome)
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
        if self._discovery is not None and not self._discovery.done():
            self._discovery.cancel()
        close = getattr(self.state, "aclose", None)
        if close is not None:
            await close()

    async def _wait_pause(self) -> None:
        # A deadline that may move later while we sleep, not an event: re-check after each sleep.
        while (delay := await self.state.paused_for()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def tighten(self, max_concurrent: int | None, rpm: float | None, tpm: int | None) -> None:
        """Apply a stricter setting from another client of the same endpoint (never loosen)."""
        if max_concurrent is not None:
            given = self._given_cap
            self._given_cap = max_concurrent if given is None else min(given, max_concurrent)
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


def _start_at(limit: Limit, slots: int) -> None:
    """Start an adaptive limit at `slots` (a limit with its own `start_at`, e.g. a fleet's,
    by that)."""
    start_at = getattr(limit, "start_at", None)
    if callable(start_at):
        start_at(slots)
    elif isinstance(limit, LatencyLimit):
        limit.limit = max(limit.min_limit, min(slots, limit.max_limit))


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
    question: CapacityQuestion | None = None,
) -> Endpoint:
    """The running loop's `Endpoint` for `key`, created with `new_limit` on first use.

    A later client of the same key with a fixed limit below the current one lowers it.
    `question` marks `new_limit` as a default: the server is asked (once) what it can take, and
    a later client's default does not count as a limit it gave.
    """
    endpoints = _registry.setdefault(asyncio.get_running_loop(), {})
    endpoint = endpoints.get((backend, key))
    if endpoint is None:
        limit = backend.share(key, new_limit)
        state = backend.state(key, limit.limit, rpm, tpm)
        endpoint = Endpoint(name, limit, state, rpm, tpm, budget)
        if question is not None:
            endpoint.ask_server(question)
        elif isinstance(limit, FixedLimit):
            endpoint._given_cap = limit.limit
        endpoints[(backend, key)] = endpoint
    else:
        given = isinstance(new_limit, FixedLimit) and question is None
        endpoint.tighten(new_limit.limit if given else None, rpm, tpm)
    return endpoint
