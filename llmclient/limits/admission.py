"""The admission seam: `Admission.admit` hands out a `Ticket`, and the ticket's `release`
does every piece of bookkeeping an attempt's end calls for (after Netflix concurrency-limits'
Limiter and Listener).

`Endpoint` (one server) and `PoolDispatcher` (several) are admissions; the pipeline knows
only this module's two protocols. A ticket says where the attempt goes (`base_url`, None for
the client's own base URL) and, released, gives the slot back, steers the limit, settles the
tpm charge, pauses the server on a Retry-After, feeds the retry budget and, in a pool, judges
the server's health.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from llmclient.errors import (
    LLMError,
    RateLimitError,
    RequestTimeoutError,
    ServerBusyError,
)
from llmclient.limits.algorithms import Outcome

if TYPE_CHECKING:
    from llmclient.limits.budget import RetryBudget
    from llmclient.limits.endpoint import Endpoint
    from llmclient.types import Usage

__all__ = ["Admission", "EndpointTicket", "Ticket", "outcome_of"]

_OVERLOAD = (RateLimitError, ServerBusyError, RequestTimeoutError)


def outcome_of(error: LLMError | None) -> Outcome:
    """What a finished attempt tells the limit: success, overload, or nothing about load."""
    if error is None:
        return Outcome.SUCCESS
    return Outcome.DROPPED if isinstance(error, _OVERLOAD) else Outcome.IGNORED


class Ticket(Protocol):
    """One admitted attempt's hold on a server: where it goes, released exactly once."""

    @property
    def base_url(self) -> str | None:
        """The server the attempt goes to (a pool's); None: the client's own base URL."""
        ...

    @property
    def where(self) -> str | None:
        """That server's name for messages (None: the client's endpoint name)."""
        ...

    @property
    def concurrency_limit(self) -> int:
        """The limit of the server the attempt was admitted to, now."""
        ...

    def release(
        self,
        error: LLMError | None,
        rtt: float,
        usage: Usage | None = None,
        *,
        cancelled: bool = False,
    ) -> float:
        """End the attempt: `error` None for an answer (with its `usage`, if reported),
        `cancelled` for one that was abandoned (it says nothing about the server); `rtt` is
        its time on the wire. Return the seconds the server was paused for (a Retry-After
        within the admission's `max_pause`), else 0."""
        ...


class Admission(Protocol):
    """Admits attempts to a server (or to one of several) under its limits."""

    budget: RetryBudget

    @property
    def concurrency_limit(self) -> int:
        """How many attempts may be on the wire at once now."""
        ...

    async def admit(self, estimated_tokens: int, max_pause: float = math.inf) -> Ticket:
        """Wait until an attempt of about `estimated_tokens` may go out; a server's
        Retry-After up to `max_pause` seconds pauses it when the ticket is released."""
        ...


class EndpointTicket:
    """A slot of one `Endpoint`, with its tpm charge."""

    __slots__ = ("charge", "endpoint", "lease", "max_pause")

    base_url: str | None = None  # an endpoint's ticket goes to the client's own base URL
    where: str | None = None

    def __init__(self, endpoint: Endpoint, lease: object, charge: float, max_pause: float):
        self.endpoint = endpoint
        self.lease = lease
        self.charge = charge
        self.max_pause = max_pause

    @property
    def concurrency_limit(self) -> int:
        """The endpoint's limit now."""
        return self.endpoint.concurrency_limit

    def release(
        self,
        error: LLMError | None,
        rtt: float,
        usage: Usage | None = None,
        *,
        cancelled: bool = False,
    ) -> float:
        """Give the slot back and let the outcome steer the limit; settle tpm, feed the retry
        budget, pause on a Retry-After (see `Ticket.release`)."""
        endpoint = self.endpoint
        if error is None:
            endpoint.release(self.lease, rtt, Outcome.IGNORED if cancelled else Outcome.SUCCESS)
            if not cancelled:
                if usage is not None and self.charge:
                    endpoint.state.settle(self.charge, usage.total_tokens)
                endpoint.budget.on_success()
            return 0.0
        if isinstance(error, RequestTimeoutError):  # back-pressure only if every slot was taken
            error.overload = endpoint.state.in_flight >= endpoint.concurrency_limit
        endpoint.release(self.lease, rtt, outcome_of(error))
        if error.overload:
            wait = error.retry_after if isinstance(error, RateLimitError) else None
            if wait and wait <= self.max_pause:  # a longer one fails the call, not the endpoint
                endpoint.pause(wait)
                return wait
        elif error.retryable:
            endpoint.budget.on_failure()
        return 0.0
