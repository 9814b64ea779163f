"""`EndpointPool`: the servers of one endpoint pool (and each one's `max_concurrent`), and
when a server is taken out and checked back; checked when given, before anything is sent."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from llmclient._checks import check_int
from llmclient.errors import ConfigurationError

if TYPE_CHECKING:
    from llmclient.profiles import MaxConcurrentSpec

__all__ = ["EndpointPool"]


class EndpointPool:
    """Several servers of one provider behind one client: `base_url=EndpointPool([...])`.

    `endpoints` is a list of URLs (each gets the profile's `max_concurrent`), or a mapping
    of URL to its own `max_concurrent` (None: the profile's). A server is taken out of the
    pool when a connection to it is refused or breaks, or after `unhealthy_after` server
    errors (5xx) or timeouts in a row, or `unhealthy_after` refusals (503, 429 without
    Retry-After) in a row while another server is in (a run of timeouts that ends with every
    slot taken counts as refusals do). It is checked (pinged) every `recheck_interval`
    seconds and comes back when it answers, on probation: if it fails again before it
    answers a request, its first failure takes it out again and the interval between its
    checks doubles (up to 32 times). A Retry-After pauses that server alone, for at most the
    retry policy's `max_server_wait`, and a server out is not checked before its Retry-After
    has passed. `probe_interval=` is the old name of `recheck_interval=` (deprecated).

    >>> EndpointPool({"http://gpu1:11434": 1, "http://gpu2:11434": None}).urls
    ('http://gpu1:11434', 'http://gpu2:11434')
    """

    __slots__ = ("limits", "recheck_interval", "unhealthy_after", "urls")

    def __init__(
        self,
        endpoints: Sequence[str] | Mapping[str, MaxConcurrentSpec | None],
        *,
        unhealthy_after: int = 3,
        recheck_interval: float = 2.0,
        probe_interval: float | None = None,
    ) -> None:
        from llmclient.profiles import ConcurrencyProfile  # profiles imports limits

        if probe_interval is not None:
            warnings.warn(
                "EndpointPool(probe_interval=) is deprecated: use recheck_interval=",
                DeprecationWarning,
                stacklevel=2,
            )
            recheck_interval = probe_interval

        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        if isinstance(endpoints, Mapping):
            items = list(endpoints.items())
        elif isinstance(endpoints, Iterable):
            items = [(url, None) for url in endpoints]
        else:
            raise ConfigurationError(
                f"invalid argument: endpoints={endpoints!r}: must be a list of URLs or a "
                "mapping of URL to max_concurrent"
            )
        if not items:
            raise ConfigurationError("invalid argument: endpoints=[]: a pool needs a URL")
        for index, (url, limit) in enumerate(items):
            if not isinstance(url, str) or not url.strip():
                raise ConfigurationError(
                    f"invalid argument: endpoints[{index}]={url!r}: must be a URL string"
                )
            if limit is not None:
                try:
                    ConcurrencyProfile(max_concurrent=limit)
                except ValueError as error:
                    raise ConfigurationError(
                        f"invalid argument: max_concurrent={limit!r} for {url}: "
                        "must be a positive integer, 'auto', a Limit or a function returning one"
                    ) from error
        urls = [url.strip() for url, _ in items]
        twice = next((url for i, url in enumerate(urls) if url in urls[:i]), None)
        if twice is not None:
            raise ConfigurationError(
                f"invalid argument: endpoints: {twice!r} is listed twice (one server's slots "
                "would be counted twice)"
            )
        check_int("unhealthy_after", unhealthy_after, 1)
        if isinstance(recheck_interval, bool) or not (
            isinstance(recheck_interval, int | float) and 0 < recheck_interval < math.inf
        ):
            name = "recheck_interval" if probe_interval is None else "probe_interval"
            raise ConfigurationError(
                f"invalid argument: {name}={recheck_interval!r}: must be a positive number"
            )
        self.urls: tuple[str, ...] = tuple(urls)
        self.limits: tuple[MaxConcurrentSpec | None, ...] = tuple(
            None if limit is None else ConcurrencyProfile(max_concurrent=limit).max_concurrent
            for _, limit in items
        )
        self.unhealthy_after = unhealthy_after
        self.recheck_interval = float(recheck_interval)

    @property
    def probe_interval(self) -> float:
        """The old name of `recheck_interval`."""
        return self.recheck_interval

    def with_urls(self, urls: Sequence[str]) -> EndpointPool:
        """The same pool with its URLs replaced (in the same order): their canonical form."""
        return EndpointPool(
            dict(zip(urls, self.limits, strict=True)),
            unhealthy_after=self.unhealthy_after,
            recheck_interval=self.recheck_interval,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EndpointPool):
            return NotImplemented
        return (self.urls, self.limits, self.unhealthy_after, self.recheck_interval) == (
            other.urls,
            other.limits,
            other.unhealthy_after,
            other.recheck_interval,
        )

    def __hash__(self) -> int:
        return hash(self.urls)

    def __repr__(self) -> str:
        endpoints = dict(zip(self.urls, self.limits, strict=True))
        if all(limit is None for limit in self.limits):
            return f"EndpointPool({list(self.urls)!r})"
        return f"EndpointPool({endpoints!r})"
