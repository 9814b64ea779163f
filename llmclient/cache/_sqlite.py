"""`SQLiteCache`: a cache store in one SQLite file, safe for many processes at once.

The file is in WAL mode (readers never wait for a writer) with a busy timeout (writers of
several processes take turns). All SQLite work runs off the event loop in two threads of the
store, one reading and one writing, each with its own connection; each takes every request
queued while it was busy as one batch (writes: one transaction), so a lookup costs one thread
hand-off shared by all the lookups waiting with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from llmclient.errors import ConfigurationError

__all__ = ["SQLiteCache"]

_SCHEMA_VERSION = 1  # PRAGMA user_version of a cache file
_BATCH = 512  # requests taken by one pass of a thread
_CORRUPT = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
_STOP = object()
_CLEAR = object()  # a write that deletes every entry

_Job = tuple[Any, asyncio.Future[Any]]


class SQLiteCache:
    """A cache store in the SQLite file `path` (made on first use), shared by every process
    that opens the same file.

    `max_bytes` caps the file's size: once full, new answers are not stored (each failed
    write is a warning; calls still return). `busy_timeout` is how long a write waits for
    another process's write to finish. A file that is not an llmclient cache (or is corrupt)
    raises `ConfigurationError` naming it at the first lookup, before any request is sent.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        busy_timeout: float = 30.0,
    ) -> None:
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 4096):
            raise ConfigurationError(
                f"invalid argument: max_bytes={max_bytes!r}: must be an int of at least 4096"
            )
        if not isinstance(busy_timeout, int | float) or busy_timeout <= 0:
            raise ConfigurationError(
                f"invalid argument: busy_timeout={busy_timeout!r}: must be a positive number"
            )
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.busy_timeout = float(busy_timeout)
        self._lock = threading.Lock()
        self._reader: _Worker | None = None
        self._writer: _Worker | None = None

    def __repr__(self) -> str:
        return f"SQLiteCache({self.path!r})"

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None."""
        result: bytes | None = await self._checked("read", key)
        return result

    async def set(self, key: str, value: bytes) -> None:
        """Store `value` under `key` (a key already stored keeps its first value); returns
        once it is committed. Raises `sqlite3.Error` when the write fails (a full disk)."""
        await self._worker("write").submit((key, value))

    async def clear(self) -> int:
        """Delete every entry (stores queued before it included); returns how many. The
        file keeps its size, and new entries reuse its pages. Raises `sqlite3.Error` when
        the delete fails."""
        removed: int = await self._checked("write", _CLEAR)
        return removed

    async def aclose(self) -> None:
        """Finish the queued work and close the file; a later use opens it again."""
        with self._lock:
            workers = [w for w in (self._reader, self._writer) if w is not None]
            self._reader = self._writer = None
        for worker in workers:
            await worker.stop()

    async def _checked(self, role: str, item: Any) -> Any:
        """`item`'s result from the `role` thread; a corrupt file is a ConfigurationError."""
        try:
            return await self._worker(role).submit(item)
        except sqlite3.Error as error:
            raise self._corrupt(error) or error from None

    def _worker(self, role: str) -> _Worker:
        worker = self._reader if role == "read" else self._writer
        if worker is not None:
            return worker
        with self._lock:
            worker = self._reader if role == "read" else self._writer
            if worker is None:
                if role == "read":
                    worker = self._reader = _Worker(f"{self!r} reader", self._connect, _read)
                else:
                    worker = self._writer = _Worker(f"{self!r} writer", self._connect, _write)
        return worker

    def _connect(self) -> sqlite3.Connection:
        """A connection to the file in WAL mode, its table made; ConfigurationError when the
        file is not a cache."""
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise self._unusable(error) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise ConfigurationError(
                    f"invalid argument: cache={self.path!r}: the file is an llmclient cache of "
                    f"another version ({version}); point cache= at a new file"
                )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS entries "
                "(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
            )
            if version == 0:
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            if self.max_bytes is not None:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {max(2, self.max_bytes // page)}")
        except sqlite3.DatabaseError as error:
            conn.close()
            if getattr(error, "sqlite_errorname", "") in _CORRUPT:
                raise self._unusable(error) from None
            raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _unusable(self, error: sqlite3.Error) -> ConfigurationError:
        return ConfigurationError(
            f"invalid argument: cache={self.path!r}: not a readable SQLite cache ({error}); "
            "move or delete the file to start a new cache"
        )

    def _corrupt(self, error: sqlite3.Error) -> ConfigurationError | None:
        """The error to raise for a read that found the file corrupt; None for other errors."""
        if getattr(error, "sqlite_errorname", "") in _CORRUPT:
            return self._unusable(error)
        return None


def _read(conn: sqlite3.Connection, keys: list[Any]) -> list[Any]:
    """Each key's value (or None): one query for the whole batch."""
    found: dict[str, bytes] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _BATCH):
        chunk = unique[start : start + _BATCH]
        marks = ",".join("?" * len(chunk))
        query = f"SELECT key, value FROM entries WHERE key IN ({marks})"
        try:
            found.update(conn.execute(query, chunk).fetchall())
        except sqlite3.Error as error:
            return [error] * len(keys)
    return [found.get(key) for key in keys]


_INSERT = "INSERT OR IGNORE INTO entries (key, value) VALUES (?, ?)"


def _write(conn: sqlite3.Connection, items: list[Any]) -> list[Any]:
    """Every item in one transaction; if that fails, each in its own (some may fit). A
    `_CLEAR` among them splits the batch: what came before it is stored first."""
    if any(item is _CLEAR for item in items):
        results: list[Any] = []
        start = 0
        for end, item in enumerate(items):
            if item is _CLEAR:
                results += _write(conn, items[start:end]) if end > start else []
                results.append(_delete_all(conn))
                start = end + 1
        return results + (_write(conn, items[start:]) if start < len(items) else [])
    try:
        with _transaction(conn):
            conn.executemany(_INSERT, items)
        return [None] * len(items)
    except sqlite3.Error as error:
        if len(items) == 1:
            return [error]
    results = []
    for item in items:
        try:
            with _transaction(conn):
                conn.execute(_INSERT, item)
        except sqlite3.Error as error:
            results.append(error)
        else:
            results.append(None)
    return results


def _delete_all(conn: sqlite3.Connection) -> int | sqlite3.Error:
    try:
        with _transaction(conn):
            return conn.execute("DELETE FROM entries").rowcount
    except sqlite3.Error as error:
        return error


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _Worker:
    """A thread that owns one connection and runs the queued requests in batches; each
    result (or exception) goes back to its future in the future's own event loop."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        handle: Callable[[sqlite3.Connection, list[Any]], list[Any]],
    ) -> None:
        self._queue: queue.SimpleQueue[list[_Job] | object] = queue.SimpleQueue()
        self._pending: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._connect, self._handle = connect, handle
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._failure: ConfigurationError | None = None
        self._started = self._stopped = False
        self._start_lock = threading.Lock()

    def submit(self, item: Any) -> asyncio.Future[Any]:
        """A future of `item`'s result. Items submitted in one turn of the event loop reach
        the thread together (one hand-off), when the loop runs its callbacks."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append((item, future))
        return future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs = self._pending.pop(loop)
        with self._start_lock:
            if self._stopped:  # closed from another loop meanwhile: nothing would answer
                closed = RuntimeError(f"{self._thread.name}: the store was closed")
                _settle([(future, closed) for _, future in jobs])
                return
            self._queue.put(jobs)
            if not self._started:
                self._thread.start()
                self._started = True

    async def stop(self) -> None:
        await asyncio.sleep(0)  # this loop's items submitted just before are handed over
        with self._start_lock:  # items handed over later are refused, never left waiting
            self._stopped = True
            self._queue.put(_STOP)
            started = self._started
        if started:
            await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        stop = False
        while not stop:
            jobs: list[_Job] = []
            batch = self._queue.get()
            while batch is not _STOP:
                jobs.extend(batch)  # type: ignore[arg-type]
                if len(jobs) >= _BATCH:
                    break
                try:
                    batch = self._queue.get_nowait()
                except queue.Empty:
                    break
            stop = batch is _STOP
            if jobs:
                _deliver(jobs, self._answer([job for job, _ in jobs]))
        if self._conn is not None:
            self._conn.close()

    def _answer(self, items: list[Any]) -> list[Any]:
        """The result (or exception) of each item; the connection is opened at first need."""
        if self._failure is not None:
            return [self._failure] * len(items)
        try:
            if self._conn is None:
                self._conn = self._connect()
            return self._handle(self._conn, items)
        except ConfigurationError as error:  # not a cache: every later item says so too
            self._failure = error
            return [error] * len(items)
        except BaseException as error:  # busy, say: the next batch tries again
            return [error] * len(items)


def _deliver(jobs: list[_Job], results: list[Any]) -> None:
    """Hand each result to its future: one callback per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]]
    by_loop = defaultdict(list)
    for (_, future), result in zip(jobs, results, strict=True):
        by_loop[future.get_loop()].append((future, result))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in settled:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
