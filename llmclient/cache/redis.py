"""`RedisCache`: a cache store in Redis, shared by every process and machine that uses it."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from llmclient._loop_local import LoopLocal
from llmclient.errors import ConfigurationError
from llmclient.limits.backends import public_url

__all__ = ["RedisCache"]


class RedisCache:
    """A cache store in the Redis at `url` (`redis://`, `rediss://` or `unix://`).

    Entries are Redis strings under `prefix` + key; `ttl` (seconds) lets Redis drop them
    after a while, None keeps them. A key already stored keeps its first value. When Redis
    cannot be reached, lookups count as misses and stores are skipped, with a warning: the
    calls still go out and return.
    """

    def __init__(
        self, url: str, *, prefix: str = "llmclient:cache:", ttl: float | None = None
    ) -> None:
        if ttl is not None and (not isinstance(ttl, int | float) or ttl <= 0):
            raise ConfigurationError(f"invalid argument: ttl={ttl!r}: must be a positive number")
        self.url, self.prefix, self.ttl = url, prefix, ttl
        self._clients: LoopLocal[aioredis.Redis] = LoopLocal(self._connect, _close)

    def __repr__(self) -> str:
        return f"RedisCache({public_url(self.url)!r})"

    def _connect(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=5)

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None."""
        value: Any = await self._clients.get().get(self.prefix + key)
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes) -> None:
        """Store `value` under `key` unless a value is there already."""
        expiry = None if self.ttl is None else max(1, round(self.ttl * 1000))
        await self._clients.get().set(self.prefix + key, value, px=expiry, nx=True)

    async def clear(self) -> int:
        """Delete every entry under this store's prefix (other keys of the Redis are left);
        returns how many. Raises redis-py's error when Redis cannot be reached."""
        if not self.prefix:
            raise ConfigurationError(
                "RedisCache.clear() needs a prefix: with prefix='' it would delete every key "
                "of the Redis"
            )
        client = self._clients.get()
        removed = 0
        keys: list[Any] = []
        async for key in client.scan_iter(match=_escape_glob(self.prefix) + "*", count=1000):
            keys.append(key)
            if len(keys) >= 1000:
                removed += await client.unlink(*keys)
                keys.clear()
        if keys:
            removed += await client.unlink(*keys)
        return removed

    async def aclose(self) -> None:
        """Close this event loop's connections."""
        await self._clients.aclose()


async def _close(client: aioredis.Redis) -> None:
    await client.aclose()


def _escape_glob(text: str) -> str:
    """`text` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
