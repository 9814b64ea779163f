"""Where an endpoint's admission state lives: in this process (`local`), or shared in Redis.

A backend hands out one `EndpointState` per endpoint key; `Endpoint` talks only to that.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

from llmclient.errors import ConfigurationError
from llmclient.limits.backends.base import (
    REDIS_SCHEMES,
    EndpointState,
    LimitBackend,
    public_url,
)
from llmclient.limits.backends.local import LOCAL, LocalBackend, LocalState

if TYPE_CHECKING:
    from llmclient.limits.backends.redis import RedisBackend

__all__ = [
    "LOCAL",
    "REDIS_SCHEMES",
    "EndpointState",
    "LimitBackend",
    "LocalBackend",
    "LocalState",
    "backend_for",
    "public_url",
    "redis_backend",
]


def backend_for(spec: str | LimitBackend, on_error: Literal["wait", "fail"]) -> LimitBackend:
    """The backend the `limits` setting names: `"local"`, a Redis URL, or a backend object."""
    if not isinstance(spec, str):
        return spec
    if spec == "local":
        return LOCAL
    return redis_backend(spec, on_error)


@functools.lru_cache(maxsize=32)
def redis_backend(url: str, on_error: Literal["wait", "fail"] = "wait") -> RedisBackend:
    """One `RedisBackend` per URL and error policy, so clients of a process share it."""
    try:
        from llmclient.limits.backends.redis import RedisBackend
    except ImportError as error:
        raise ConfigurationError(
            f"limits={public_url(url)!r} needs the redis package: pip install 'llmclient[redis]' "
            f"({error})"
        ) from None
    return RedisBackend(url, on_error=on_error)
