"""One server of a running endpoint pool: its `PoolMember` (endpoint, health, counters), the
`EndpointStats` it reports, and the `PoolTicket` of an attempt admitted to it."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmclient.limits.admission import EndpointTicket
from llmclient.limits.endpoint import Endpoint
from llmclient.types import percentile

if TYPE_CHECKING:
    from llmclient.errors import LLMError
    from llmclient.limits.pool import PoolDispatcher
    from llmclient.types import Usage

__all__ = ["EndpointStats", "PoolMember", "PoolTicket"]

_SAMPLES = 1024  # latencies kept per endpoint for its percentiles


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """One server of a client: its health and the attempts it served.

    `answered` and `failed` count attempts (a retried request counts once per attempt);
    latencies are in seconds over its recent answered attempts. A single-endpoint client
    reports its one server as healthy: only pools take servers out.
    """

    url: str
    healthy: bool
    problem: str | None  # why it was taken out (and what the last check said), if it was
    in_flight: int
    concurrency_limit: int
    answered: int
    failed: int
    latency_p50: float | None
    latency_p95: float | None


class PoolMember:
    """One server of a running pool: its `Endpoint`, health and counters."""

    __slots__ = (
        "answered",
        "backoff",
        "endpoint",
        "failed",
        "faulted_at",
        "faults",
        "healthy",
        "index",
        "latencies",
        "name",
        "pool",
        "problem",
        "reason",
        "refusals",
        "refusing",
        "reserved",
        "resume_at",
        "returned",
        "timeouts",
        "url",
    )

    def __init__(self, pool: PoolDispatcher, index: int, url: str, name: str, endpoint: Endpoint):
        self.pool = pool
        self.index = index
        self.url = url  # the base URL requests go to
        self.name = name  # the same without credentials, for messages
        self.endpoint = endpoint
        self.healthy = True
        self.problem: str | None = None
        self.reason: str | None = None  # why it was taken out
        self.faults = 0  # server errors in a row
        self.refusals = 0  # refusals (503, 429 without Retry-After) in a row
        self.refusing = False  # out for refusing: up, but not serving
        self.faulted_at = -math.inf  # loop time of its last server error or refusal
        self.reserved = 0  # handed a slot by the pool, not yet admitted by the endpoint
        self.resume_at = 0.0  # loop time before which it gets no new request (Retry-After)
        self.answered = self.failed = 0
        self.latencies: deque[float] = deque(maxlen=_SAMPLES)
        # timeouts in a row: (how many, `answered` at the first one)
        self.timeouts = (0, 0)
        self.returned: int | None = None  # `answered` when a check let it back in, if one did
        self.backoff = 1  # times `recheck_interval` between its checks

    def free(self, now: float) -> int:
        """Slots the pool may still hand out here now (0 when out of the pool or paused)."""
        if not self.healthy or self.resume_at > now:
            return 0
        endpoint = self.endpoint
        return endpoint.concurrency_limit - endpoint.state.in_flight - self.reserved

    def stats(self) -> EndpointStats:
        """A snapshot of this server's health and counters."""
        latencies = sorted(self.latencies)
        return EndpointStats(
            url=self.name,
            healthy=self.healthy,
            problem=self.problem,
            in_flight=self.endpoint.state.in_flight,
            concurrency_limit=self.endpoint.concurrency_limit,
            answered=self.answered,
            failed=self.failed,
            latency_p50=percentile(latencies, 0.50),
            latency_p95=percentile(latencies, 0.95),
        )

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else f"out: {self.problem}"
        return f"PoolMember({self.name!r}, {state})"


class PoolTicket:
    """A slot on one server of a pool: its endpoint's ticket, and the member to judge."""

    __slots__ = ("inner", "member")

    def __init__(self, member: PoolMember, inner: EndpointTicket) -> None:
        self.member = member
        self.inner = inner

    @property
    def base_url(self) -> str:
        """The pool server the attempt goes to."""
        return self.member.url

    @property
    def where(self) -> str:
        """That server's name for messages (no credentials)."""
        return self.member.name

    @property
    def concurrency_limit(self) -> int:
        """That server's limit now."""
        return self.member.endpoint.concurrency_limit

    def release(
        self,
        error: LLMError | None,
        rtt: float,
        usage: Usage | None = None,
        *,
        cancelled: bool = False,
    ) -> float:
        """Release the endpoint's ticket, then judge the server's health and hand its slot on."""
        paused = self.inner.release(error, rtt, usage, cancelled=cancelled)
        self.member.pool.finished(self.member, error, rtt, cancelled)
        return paused
