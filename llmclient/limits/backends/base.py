"""The backend seam: what `Endpoint` needs from the store of its slots, buckets and pause.

Acquiring may wait, may fail and may talk to another machine, so it is async; giving back
never blocks (a remote backend sends it in the background, and its leases expire anyway).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from llmclient.limits.algorithms import Limit

__all__ = ["REDIS_SCHEMES", "EndpointState", "LimitBackend", "public_url"]

REDIS_SCHEMES = ("redis", "rediss", "unix")  # the URLs `limits=` accepts besides "local"


def public_url(url: str) -> str:
    """`url` without its password or query, for messages and settings dumps.

    >>> public_url("redis://:hunter2@10.0.0.5:6380/1")
    'redis://10.0.0.5:6380/1'
    >>> public_url("unix:///run/redis.sock?db=2")
    'unix:///run/redis.sock'
    >>> public_url("redis://:pw@[::1/0")
    'redis://<hidden>'
    """
    if "://" not in url:  # not a URL at all: shown as given, unless it may hold a password
        return url if "@" not in url else "<hidden>"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return f"{url.partition('://')[0]}://<hidden>"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ":?"
    shown = f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
    return shown if "@" not in shown else f"{parts.scheme}://<hidden>"


class EndpointState(Protocol):
    """One endpoint's slots, rate buckets and pause gate."""

    @property
    def in_flight(self) -> int:
        """Slots held now (as far as this process can tell)."""
        ...

    @property
    def waiting(self) -> int:
        """Requests of this process waiting for a slot now."""
        ...

    @property
    def rates_active(self) -> bool:
        """Whether an rpm or tpm limit is set."""
        ...

    async def acquire_slot(self) -> object:
        """Wait for a slot; return the lease to give back. Cancelling leaves no slot taken."""
        ...

    def release_slot(self, lease: object) -> None:
        """Give a slot back; never blocks."""
        ...

    def set_limit(self, limit: int) -> None:
        """Admit at most `limit` at once from now on (holders are never interrupted)."""
        ...

    def set_rates(self, rpm: float | None, tpm: int | None) -> None:
        """Replace the rpm and tpm limits."""
        ...

    async def reserve(self, tokens: float) -> float:
        """Wait for one request's worth of rpm and `tokens` of tpm; return the tpm charged."""
        ...

    def settle(self, charged: float, used: int) -> None:
        """Correct a tpm charge with the usage the provider reported; never blocks."""
        ...

    async def paused_for(self) -> float:
        """Seconds until new requests may go out (0 when not paused)."""
        ...

    def pause_left(self) -> float | None:
        """`paused_for` when the state can tell without I/O (a local one), else None: the
        admission path then skips awaiting `paused_for` when nothing is paused."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold back new requests for `seconds` (extends, never shortens, a pause)."""
        ...


class LimitBackend(Protocol):
    """Creates the state of each endpoint; endpoints with equal keys share it."""

    def state(self, key: Hashable, limit: int, rpm: float | None, tpm: int | None) -> EndpointState:
        """The state for `key`, starting at `limit` slots and the given rates."""
        ...

    def share(self, key: Hashable, limit: Limit) -> Limit:
        """The limit `key`'s endpoint steers by: `limit` itself, or one shared more widely."""
        ...
