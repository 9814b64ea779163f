"""The response cache: answers kept by request, so a re-run of a job sends nothing twice.

`cache=` on a client (or `LLMCLIENT_CACHE`) is a SQLite file's path, a Redis URL, or any
`CacheStore`; `cache_mode=` is `"replay"` (every call) or `"deterministic"` (temperature 0
or a seed only). A hit costs no slot, no rate budget and no request. See docs/cache.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from llmclient.cache._binding import CacheMode, CacheStore, ClientCache
from llmclient.cache._key import CACHE_VERSION
from llmclient.cache._sqlite import SQLiteCache
from llmclient.errors import ConfigurationError
from llmclient.limits.backends import REDIS_SCHEMES, public_url

if TYPE_CHECKING:
    from llmclient.cache.redis import RedisCache

__all__ = [
    "CACHE_VERSION",
    "CacheMode",
    "CacheStore",
    "ClientCache",
    "RedisCache",
    "SQLiteCache",
    "client_cache",
    "is_store",
    "store_for",
]

OFF = "off"


def is_store(value: object) -> bool:
    """Whether `value` can serve as a cache store (it has `get` and `set`)."""
    return callable(getattr(value, "get", None)) and callable(getattr(value, "set", None))


def store_for(spec: str | os.PathLike[str] | CacheStore) -> CacheStore:
    """The store `spec` names: a Redis URL, a SQLite file's path, or a store object itself."""
    if not isinstance(spec, str | os.PathLike):
        return spec
    text = os.fspath(spec)
    if text.partition("://")[0] in REDIS_SCHEMES and "://" in text:
        try:
            from llmclient.cache.redis import RedisCache
        except ImportError as error:
            raise ConfigurationError(
                f"cache={public_url(text)!r} needs the redis package: "
                f"pip install 'llmclient[redis]' ({error})"
            ) from None
        return RedisCache(text)
    return SQLiteCache(text)


def client_cache(
    spec: str | os.PathLike[str] | CacheStore | None, mode: CacheMode, endpoint: str
) -> ClientCache | None:
    """A client's cache for the `cache` setting, None when it is off."""
    if spec is None or spec == OFF:
        return None
    owned = isinstance(spec, str | os.PathLike)
    return ClientCache(store_for(spec), mode, endpoint, owned)


def __getattr__(name: str) -> object:
    if name == "RedisCache":  # needs the redis extra: imported when asked for
        from llmclient.cache.redis import RedisCache

        return RedisCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
