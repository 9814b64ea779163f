"""The SQLite cache store under faults: many processes on one file, a writer killed with
SIGKILL, a corrupt file, a full file (SQLite's own max_page_count limit, not a mock)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from llmclient import ConfigurationError, OllamaClient
from llmclient.cache import SQLiteCache
from llmclient.testing import SimulatedServer

Factory = Callable[..., Awaitable[SimulatedServer]]
ROOT = Path(__file__).resolve().parent.parent

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from llmclient.cache import SQLiteCache

    async def main(path, name, count):
        store = SQLiteCache(path, busy_timeout=60)
        for i in range(count):
            await store.set(f"{name}-{i}", f"value {name} {i}".encode() * 20)
            print(i, flush=True)
            got = await store.get(f"{name}-{i}")
            assert got is not None, (name, i)
        await store.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def start_writer(path: Path, name: str, count: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), name, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def entries(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        return count


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        result: str = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return result


def test_many_processes_write_and_read_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    writers = [start_writer(path, f"p{n}", 150) for n in range(4)]
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
    assert entries(path) == 600
    assert integrity(path) == "ok"


def test_a_writer_killed_mid_write_leaves_every_committed_entry(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    writer = start_writer(path, "w", 1_000_000)
    assert writer.stdout is not None
    done = -1
    for line in writer.stdout:
        done = int(line)
        if done >= 300:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert writer.returncode == -signal.SIGKILL

    async def read_back() -> None:
        store = SQLiteCache(path)
        for i in range(done + 1):
            assert await store.get(f"w-{i}") == f"value w {i}".encode() * 20, i
        await store.set("after", b"still writable")
        assert await store.get("after") == b"still writable"
        await store.aclose()

    asyncio.run(read_back())
    assert integrity(path) == "ok"


async def test_a_file_that_is_not_a_cache_is_named_before_any_request(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    path = tmp_path / "garbage.sqlite"
    await asyncio.to_thread(path.write_bytes, os.urandom(8192))
    async with OllamaClient("sim-model", host=server.url, cache=path) as client:
        for _ in range(2):  # every call says so, not only the first
            with pytest.raises(ConfigurationError) as caught:
                await client.generate("hi")
            assert f"cache={str(path)!r}" in str(caught.value)
            assert "move or delete the file" in str(caught.value)
    assert server.stats.by_path["/api/chat"] == 0


def scribble_pages(path: Path) -> None:
    """Overwrite every page after the first (the schema) with garbage."""
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)
    path.write_bytes(bytes(data))


async def test_a_corrupt_page_is_named_at_the_lookup_that_finds_it(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.sqlite"
    store = SQLiteCache(path)
    for i in range(200):
        await store.set(f"k{i}", b"x" * 500)
    await store.aclose()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await asyncio.to_thread(scribble_pages, path)
    store = SQLiteCache(path)
    with pytest.raises(ConfigurationError, match="not a readable SQLite cache") as caught:
        await store.get("k1")
    assert str(path) in str(caught.value)
    await store.aclose()


async def test_a_cache_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    store = SQLiteCache(path)
    with pytest.raises(ConfigurationError, match=r"another version \(99\)"):
        await store.get("k")
    await store.aclose()


async def test_a_full_file_still_answers_and_warns(
    tmp_path: Path, simulated_server_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await simulated_server_factory(latency=0.001)
    path = tmp_path / "small.sqlite"
    store = SQLiteCache(path, max_bytes=64 * 1024)
    prompts = [f"{i} " + "long question " * 150 for i in range(60)]  # ~2 KB answers
    with caplog.at_level(logging.WARNING, logger="llmclient"):
        async with OllamaClient("sim-model", host=server.url, cache=store) as client:
            answers = [await client.generate(p) for p in prompts]
    assert all(a.text.startswith("Simulated reply to: ") for a in answers)
    stored = entries(path)
    assert 0 < stored < 60
    warnings = [r.getMessage() for r in caplog.records if "store failed" in r.getMessage()]
    assert warnings and "database or disk is full" in warnings[0]
    assert "the answer is returned but not cached" in warnings[0]
    async with OllamaClient("sim-model", host=server.url, cache=store) as client:
        for p in prompts:
            await client.generate(p)
        assert client.stats.cache_hits == stored
    await store.aclose()


@pytest.mark.parametrize(
    ("options", "named"),
    [({"max_bytes": 10}, "max_bytes=10"), ({"busy_timeout": 0}, "busy_timeout=0")],
)
def test_bad_store_options_are_named(options: dict[str, int], named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"invalid argument: {named}"):
        SQLiteCache("x.sqlite", **options)  # type: ignore[arg-type]


async def test_a_store_serves_several_event_loops(tmp_path: Path) -> None:
    store = SQLiteCache(tmp_path / "loops.sqlite")
    await store.set("a", b"1")

    def other_loop() -> bytes | None:
        async def read() -> bytes | None:
            return await store.get("a")

        return asyncio.run(read())

    assert await asyncio.to_thread(other_loop) == b"1"
    await store.aclose()


async def test_clear_deletes_every_entry_and_a_rerun_sends_again(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    """Stores queued in the same turn as `clear()` are deleted too; the next run of the
    same calls goes to the server again and is stored again."""
    server = await simulated_server_factory(latency=0.001)
    path = tmp_path / "cache.sqlite"
    async with OllamaClient("sim-model", host=server.url, cache=str(path)) as client:
        await asyncio.gather(*(client.generate(f"q{i}") for i in range(5)))
    store = SQLiteCache(path)
    queued = [store.set(f"extra{i}", b"v") for i in range(3)]
    *_, removed = await asyncio.gather(*queued, store.clear())
    assert removed == 5 + 3
    assert entries(path) == 0 and await store.get("extra0") is None
    await store.aclose()
    async with OllamaClient("sim-model", host=server.url, cache=str(path)) as client:
        await asyncio.gather(*(client.generate(f"q{i}") for i in range(5)))
        assert (client.stats.cache_hits, client.stats.cache_misses) == (0, 5)
    assert server.stats.by_path["/api/chat"] == 10
    assert entries(path) == 5


async def test_clear_names_a_file_that_is_not_a_cache(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a database at all" * 100)
    store = SQLiteCache(path)
    with pytest.raises(ConfigurationError, match=r"notes\.txt"):
        await store.clear()
    await store.aclose()


async def test_a_lookup_queued_in_another_loop_as_the_store_closes_does_not_hang(
    tmp_path: Path,
) -> None:
    """A client used from two threads shares its store: one thread's lookup was queued
    (not yet handed to the reader thread) when another closed the store, and was handed
    over after the reader had stopped, so nothing ever answered it."""
    store = SQLiteCache(tmp_path / "cache.sqlite")
    await store.set("k", b"v")
    assert await store.get("k") == b"v"  # the reader thread runs
    queued, release = threading.Event(), threading.Event()

    async def lookup_held_back() -> bytes | None:
        task = asyncio.ensure_future(store.get("k"))
        await asyncio.sleep(0)  # the lookup is queued; its hand-over runs after this
        queued.set()
        release.wait(10)  # this loop holds still while the other one closes the store
        return await asyncio.wait_for(task, 10)

    other = asyncio.get_running_loop().run_in_executor(None, asyncio.run, lookup_held_back())
    await asyncio.to_thread(queued.wait, 10)
    await store.aclose()
    release.set()
    with pytest.raises(RuntimeError, match="the store was closed"):
        await asyncio.wait_for(other, 20)
    assert await store.get("k") == b"v"  # a later use opens the file again
    await store.aclose()
