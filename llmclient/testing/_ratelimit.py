"""The simulated server's requests-per-minute limit and the rate headers announcing it."""

from __future__ import annotations

import math
from collections import deque

from . import _protocols as proto
from ._reply import Reply

RATE_HEADERS = ("openai", "ietf", "both", "none")


class RequestWindow:
    """At most `rpm` accepted requests over a sliding window of `span` seconds, announced in
    the headers `rate_headers` names (OpenAI's x-ratelimit-*, the IETF RateLimit, both, none)."""

    def __init__(self, rpm: int, span: float, rate_headers: str) -> None:
        self._rpm = rpm
        self._span = span
        self._rate_headers = rate_headers
        self._window: deque[float] = deque()

    async def admit(self, reply: Reply, now: float) -> bool:
        """Apply the rpm window: record the request, or answer 429 and return False."""
        window, span, rpm = self._window, self._span, self._rpm
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= rpm:
            wait = window[0] + span - now
            await reply.error(
                429,
                f"Rate limit reached for requests per min (RPM): Limit {rpm}, Used {len(window)},"
                f" Requested 1. Please try again in {proto.go_duration(wait)}.",
                type_="requests",
                code="rate_limit_exceeded",
                headers=[
                    ("retry-after", str(max(1, math.ceil(wait)))),
                    *self._headers(rpm, 0, wait),
                ],
            )
            return False
        window.append(now)
        if reply.openai:
            reply.headers = self._headers(rpm, rpm - len(window), window[0] + span - now)
        return True

    def _headers(self, rpm: int, remaining: int, reset: float) -> list[tuple[str, str]]:
        """The rate headers chosen by `rate_headers`: OpenAI's x-ratelimit-*, the IETF ones."""
        kind = self._rate_headers
        headers = []
        if kind in ("openai", "both"):
            headers += proto.limit_headers(rpm, remaining, reset)
        if kind in ("ietf", "both"):
            headers += proto.ietf_limit_headers(rpm, remaining, reset, self._span)
        return headers
