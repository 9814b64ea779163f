"""`ClientCache`: one client's use of a cache store: keys, modes, sample indexes, stats and
the sharing of identical requests in flight."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar

from llmclient.cache import _records as records
from llmclient.cache._key import CACHE_VERSION, canonical, is_deterministic
from llmclient.errors import LLMError
from llmclient.types import Completion, StreamEnd

__all__ = ["CacheMode", "CacheStore", "ClientCache"]

CacheMode = Literal["replay", "deterministic"]
T = TypeVar("T")
logger = logging.getLogger("llmclient")
RESTING = 1.0  # seconds a store that failed is not asked again (lookups: calls are misses)


class CacheStore(Protocol):
    """Where cached answers live: any object with these two coroutines is a cache.

    Keys are hex SHA-256 strings, values bytes. `get` returns None for a key never stored.
    An `LLMError` raised by either stops the call; any other exception is logged as a
    warning and the call goes on (a failed lookup counts as a miss, a failed store is
    skipped). A store may also have `aclose()`, awaited when the client that made it closes.
    """

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...


class _Sampling(Protocol):
    @property
    def temperature(self) -> float | None: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def provider_options(self) -> dict[str, Any]: ...


class _Abandoned(Exception):
    """The call that was sending a request for others stopped (cancelled, or a stream's
    reader left early): each waiting call then tries itself."""


class ClientCache:
    """One client's cache: which calls are cached (`mode`), their keys, hits and misses.

    In `replay` mode every call is cached and the n-th identical sampled call of this client
    gets the n-th stored answer; in `deterministic` mode only calls with temperature 0 or a
    seed are. Identical calls in flight at once send one request: the others wait for it and
    get its answer, or its error; if it was cancelled, the next one sends its own.
    """

    def __init__(self, store: CacheStore, mode: CacheMode, endpoint: str, owned: bool) -> None:
        self.store, self.mode, self.owned = store, mode, owned
        self._endpoint = endpoint
        self.hits = self.misses = 0
        self._samples: dict[bytes, itertools.count[int]] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._failures: dict[str, int] = {}
        self._resting: dict[str, float] = {}  # lookup/store -> when to ask the store again

    def key(self, kind: str, model: str, body: Mapping[str, Any], params: _Sampling) -> str | None:
        """The key of a call, None when this mode does not cache it. Each call of a sampled
        request takes the next sample index, so call this once per call."""
        deterministic = is_deterministic(params.temperature, params.seed, params.provider_options)
        if not deterministic and self.mode == "deterministic":
            return None
        identity = {
            "v": CACHE_VERSION,
            "kind": kind,
            "endpoint": self._endpoint,
            "model": model,
            "body": body,
        }
        hashed = hashlib.sha256(canonical(identity).encode())
        sample = 0 if deterministic else next(self._samples.setdefault(hashed.digest(), _count()))
        hashed.update(f"#{sample}".encode())
        return hashed.hexdigest()

    async def completion(self, key: str, send: Callable[[], Awaitable[Completion]]) -> Completion:
        """The stored completion of `key`, or the one `send()` gets (then stored)."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        while (shared := self._inflight.get(key)) is not None and shared.get_loop() is loop:
            try:
                completion: Completion = await asyncio.shield(shared)
            except _Abandoned:
                continue
            return self._hit(completion, started)
        future: asyncio.Future[Completion] = loop.create_future()
        self._inflight[key] = future
        try:
            hit = await self._lookup(
                key, lambda data: records.decode_completion(data, time.perf_counter() - started)
            )
            if hit is not None:
                self.hits += 1
                future.set_result(hit)
                return hit
            self.misses += 1
            completion = await send()  # budgets: a hit never gets here, so it costs nothing
            future.set_result(completion)
            await self._set(key, records.encode_completion(completion))
            return completion
        except BaseException as exc:
            _share(future, exc)
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    def stream(
        self,
        key: str,
        open_stream: Callable[[Callable[[StreamEnd], None]], AsyncIterator[str]],
        on_end: Callable[[StreamEnd], None],
    ) -> AsyncIterator[str]:
        """The stored deltas of `key` replayed, or the stream `open_stream` relays (stored
        when it completes)."""
        return self._stream(key, open_stream, on_end)

    async def _stream(
        self,
        key: str,
        open_stream: Callable[[Callable[[StreamEnd], None]], AsyncIterator[str]],
        on_end: Callable[[StreamEnd], None],
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        while (shared := self._inflight.get(key)) is not None and shared.get_loop() is loop:
            try:
                deltas, end = await asyncio.shield(shared)
            except _Abandoned:
                continue
            self.hits += 1
            for delta in deltas:
                yield delta
            on_end(end)
            return
        future: asyncio.Future[tuple[list[str], StreamEnd]] = loop.create_future()
        self._inflight[key] = future
        try:
            replay = await self._lookup(key, records.decode_stream)
            if replay is not None:
                self.hits += 1
                future.set_result(replay)
                deltas, end = replay
                for delta in deltas:
                    yield delta
                on_end(end)
                return
            self.misses += 1
            got: list[str] = []
            ends: list[StreamEnd] = []

            def ended(end: StreamEnd) -> None:
                ends.append(end)
                on_end(end)

            parts = open_stream(ended)
            try:
                async for delta in parts:
                    got.append(delta)
                    yield delta
            finally:
                close = getattr(parts, "aclose", None)
                if close is not None:
                    await close()
            if ends:
                future.set_result((got, ends[0]))
                await self._set(key, records.encode_stream(got, ends[0]))
        except BaseException as exc:
            _share(future, exc)
            raise
        finally:
            _share(future, _Abandoned())
            if self._inflight.get(key) is future:
                del self._inflight[key]

    async def embed(
        self,
        model: str,
        texts: list[str],
        send: Callable[[list[str]], Awaitable[list[list[float]]]],
    ) -> list[list[float]]:
        """Each text's stored vector; the others from `send(missing)`, then stored."""
        keys = [self._embed_key(model, text) for text in texts]
        found = await asyncio.gather(*(self._lookup(key, records.decode_vector) for key in keys))
        missing = [i for i, vector in enumerate(found) if vector is None]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        vectors = [[] if vector is None else vector for vector in found]
        if missing:
            fresh = await send([texts[i] for i in missing])
            for i, vector in zip(missing, fresh, strict=True):
                vectors[i] = vector
            await asyncio.gather(
                *(self._set(keys[i], records.encode_vector(vectors[i])) for i in missing)
            )
        return vectors

    async def aclose(self) -> None:
        """Close the store if this client made it (a store passed in is its owner's)."""
        close = getattr(self.store, "aclose", None)
        if self.owned and close is not None:
            await close()

    # ------------------------------------------------------------------ internals
    def _embed_key(self, model: str, text: str) -> str:
        identity = {"v": CACHE_VERSION, "kind": "embed", "endpoint": self._endpoint}
        hashed = hashlib.sha256(canonical({**identity, "model": model, "input": text}).encode())
        return hashed.hexdigest()

    def _hit(self, completion: Completion, started: float) -> Completion:
        self.hits += 1
        return dataclasses.replace(completion, attempts=0, latency=time.perf_counter() - started)

    async def _lookup(self, key: str, decode: Callable[[bytes], T]) -> T | None:
        """The decoded entry of `key`; None when there is none, or it cannot be decoded (an
        entry not written by this version: a warning, and the call goes out)."""
        data = await self._get(key)
        if data is None:
            return None
        try:
            return decode(data)
        except (ValueError, TypeError, KeyError, IndexError) as error:
            self._failed("decoding", error, "the request is sent")
            return None

    async def _get(self, key: str) -> bytes | None:
        if self._resting and time.monotonic() < self._resting.get("lookup", 0.0):
            return None
        try:
            return await self.store.get(key)
        except (LLMError, asyncio.CancelledError):
            raise
        except Exception as error:
            self._failed("lookup", error, "the request is sent")
            return None

    async def _set(self, key: str, value: bytes) -> None:
        if self._resting and time.monotonic() < self._resting.get("store", 0.0):
            return
        try:
            await self.store.set(key, value)
        except (LLMError, asyncio.CancelledError):
            raise
        except Exception as error:
            self._failed("store", error, "the answer is returned but not cached")

    def _failed(self, what: str, error: Exception, outcome: str) -> None:
        """Warn of a failed lookup or store (the 1st, 10th, 100th... of each kind), and ask
        the store no more of them for `RESTING` seconds: a store that times out must not
        slow every call down."""
        self._resting[what] = time.monotonic() + RESTING
        count = self._failures[what] = self._failures.get(what, 0) + 1
        if str(count).rstrip("0") == "1":
            logger.warning(
                "cache %r: %s failed (%s: %s); %s (%d such failure%s so far)",
                self.store,
                what,
                type(error).__name__,
                error,
                outcome,
                count,
                "" if count == 1 else "s",
            )


def _count() -> itertools.count[int]:
    return itertools.count()


def _share(future: asyncio.Future[Any], exc: BaseException) -> None:
    """End `future` for the calls waiting on it: with `exc` if it is an error of the request,
    with `_Abandoned` (they try themselves) if the call was cancelled or left early."""
    if future.done():
        return
    if isinstance(exc, Exception) and not isinstance(exc, _Abandoned):
        future.set_exception(exc)
    else:
        future.set_exception(_Abandoned())
    future.exception()  # retrieved: nobody waiting is not an error
