"""How many workers `amap` starts: the limit of the client whose method it maps, or a default."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_MAX_WORKERS", "HasWorkerLimit", "client_workers", "sized_owner", "worker_count"]

DEFAULT_MAX_WORKERS = 256
"""Worker count when ``max_concurrent`` is None.

Not a server limit (that is the client's own concurrency limit); it only stops `amap` from
turning into one task per item.
"""


@runtime_checkable
class HasWorkerLimit(Protocol):
    """What `amap` sizes itself to when ``coro_fn`` is one of its methods (`BaseLLMClient` is one).

    ``max_workers``: the most calls it can ever have on the wire; ``discover_limits()`` asks its
    servers what they take and returns the new ``max_workers``.
    """

    @property
    def max_workers(self) -> int: ...

    async def discover_limits(self) -> int: ...


def sized_owner(coro_fn: Callable[..., object]) -> HasWorkerLimit | None:
    """The object a bound method (or a partial of one) belongs to, if it has a worker limit."""
    target = coro_fn.func if isinstance(coro_fn, functools.partial) else coro_fn
    owner = getattr(target, "__self__", None)
    return owner if isinstance(owner, HasWorkerLimit) else None


def worker_count(owner: HasWorkerLimit | None) -> int:
    """Workers for an `amap` whose ``max_concurrent`` is None: the owner's, else the default."""
    return (owner.max_workers if owner is not None else None) or DEFAULT_MAX_WORKERS


def client_workers(coro_fn: Callable[..., object]) -> int | None:
    """The `max_workers` of the client a bound method (or a partial of one) belongs to.

    `run_concurrent(client.generate_answer, prompts)` then runs as many workers as the client
    can put on the wire, not `DEFAULT_MAX_WORKERS` mostly waiting for its slots.
    """
    owner = sized_owner(coro_fn)
    return None if owner is None else owner.max_workers
