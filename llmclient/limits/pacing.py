"""`ServerPacing`: dispatch paced by the quota the server's rate-limit headers announce.

Used for the requests and tokens quotas no rpm or tpm setting covers. It keeps the last
quota a response announced, less what went out since, and holds requests back so the quota
is not spent before the server says it resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from llmclient.limits.headers import Quota, ServerRates

__all__ = ["ServerPacing"]

_UNKNOWN_RESET = 1.0  # seconds a quota without a reset time is trusted, and a lone request waits


class _Budget:
    """One quota (requests or tokens) as this process can tell it now."""

    __slots__ = ("allowance", "expires", "last_sent")

    def __init__(self) -> None:
        self.allowance = math.inf  # nothing announced yet
        self.expires = 0.0  # loop time when the announced quota resets
        self.last_sent = -math.inf

    def learn(self, quota: Quota, in_flight: float, now: float, max_wait: float) -> None:
        """The server's word, less what is on the wire and may not be counted in it yet."""
        reset = quota.reset if quota.reset is not None else _UNKNOWN_RESET
        if reset > max_wait:  # not waited for: the next request goes and finds out
            self.allowance, self.expires = math.inf, 0.0
            return
        self.allowance = quota.remaining - in_flight
        self.expires = now + reset

    def delay(self, cost: float, demand: float, now: float) -> float:
        """Seconds until a request costing `cost` may go, with `demand` waiting (it included).

        While the allowance covers the demand, at once; below that, the allowance is spread
        evenly over the time to the reset; with nothing left, at the reset. A quota that
        reset while spent lets one request through and waits for its answer to say more.
        """
        left = self.expires - now
        if left <= 0:
            if self.allowance >= cost:
                return 0.0  # reset with some left: the server has not said otherwise
            self.allowance, self.expires = cost, now + _UNKNOWN_RESET
            return 0.0
        if self.allowance >= demand:
            return 0.0
        if self.allowance < cost:
            return left
        return max(0.0, self.last_sent + left * cost / self.allowance - now)

    def spend(self, cost: float, now: float) -> None:
        self.allowance -= cost
        self.last_sent = now


class ServerPacing:
    """Holds requests back so the server's announced quota lasts until its reset.

    `observe` takes each response's quotas (`parse_rate_headers`); `wait` is awaited before
    a request goes out and `done` called when its answer (or failure) is in. Until a
    response announces a quota, `wait` returns at once; after that, waiters go first come,
    first served.
    """

    __slots__ = (
        "_changed",
        "_lock",
        "_mean_tokens",
        "_requests",
        "_tokens",
        "in_flight",
        "pace_requests",
        "pace_tokens",
        "waiting",
    )

    def __init__(self, *, pace_requests: bool = True, pace_tokens: bool = True) -> None:
        self.pace_requests = pace_requests
        self.pace_tokens = pace_tokens
        self._requests = _Budget()
        self._tokens = _Budget()
        self._mean_tokens = 0.0  # mean token estimate of recent requests
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.in_flight = 0  # requests let through and not done yet
        self.waiting = 0

    @property
    def active(self) -> bool:
        """Whether the server announced a quota this pacing applies to."""
        return (self.pace_requests and self._requests.allowance < math.inf) or (
            self.pace_tokens and self._tokens.allowance < math.inf
        )

    def observe(self, rates: ServerRates, max_wait: float = math.inf) -> None:
        """Take the quotas one response announced (it is still counted in flight).

        A quota resetting further than `max_wait` seconds away holds nothing back: the next
        request sent finds out (a 429 whose wait is too long fails it at once).
        """
        now = asyncio.get_running_loop().time()
        others = max(0, self.in_flight - 1)
        if rates.requests is not None:
            self._requests.learn(rates.requests, others, now, max_wait)
        if rates.tokens is not None:
            self._tokens.learn(rates.tokens, others * self._mean_tokens, now, max_wait)
        self._changed.set()

    async def wait(self, tokens: float) -> None:
        """Wait until a request estimated at `tokens` may go without overspending the quota."""
        if self.waiting or self.active:
            self.waiting += 1
            try:
                async with self._lock:
                    while (delay := self._delay(tokens)) > 0:
                        self._changed.clear()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay):
                                await self._changed.wait()
            finally:
                self.waiting -= 1
        now = asyncio.get_running_loop().time()
        self._requests.spend(1, now)
        self._tokens.spend(tokens, now)
        self._mean_tokens += (tokens - self._mean_tokens) * 0.1
        self.in_flight += 1

    def done(self) -> None:
        """A request let through by `wait` is answered or failed."""
        self.in_flight -= 1

    def _delay(self, tokens: float) -> float:
        now = asyncio.get_running_loop().time()
        delay = 0.0
        if self.pace_requests:
            delay = self._requests.delay(1, self.waiting, now)
        if self.pace_tokens and tokens > 0:
            delay = max(delay, self._tokens.delay(tokens, tokens * self.waiting, now))
        return delay

    def __repr__(self) -> str:
        return (
            f"ServerPacing(requests={self._requests.allowance:g}, "
            f"tokens={self._tokens.allowance:g}, in_flight={self.in_flight})"
        )
