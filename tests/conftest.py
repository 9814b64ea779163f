"""Shared fixtures: the simulated servers, a clean environment and a fast retry policy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from llmclient import RetryPolicy
from llmclient.testing import SimulatedServer
from llmclient.testing.redis import RedisServer

pytest_plugins = ["llmclient.testing.pytest_plugin"]

FAST_RETRY = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.01)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own LLMCLIENT_/OLLAMA_/OPENAI_ variables."""
    for name in list(os.environ):
        if (
            name.startswith(("LLMCLIENT_", "OLLAMA_", "OPENAI_"))
            and name != "LLMCLIENT_REQUIRE_REDIS"
        ):
            monkeypatch.delenv(name)


@contextlib.contextmanager
def server_in_thread(**options: Any) -> Iterator[SimulatedServer]:
    """A `SimulatedServer(**options)` running in its own thread and loop, so tests may call
    asyncio.run (or other processes reach it) while it serves."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        async with SimulatedServer(**options) as simulated:
            holder.update(server=simulated, loop=asyncio.get_running_loop(), stop=stop)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield holder["server"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


@pytest.fixture
def threaded_server() -> Iterator[SimulatedServer]:
    """A 2-slot simulated server in its own thread and loop."""
    with server_in_thread(parallel=2, latency=0.005) as server:
        yield server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port for one test.

    Skipped when redis-server is not installed, unless LLMCLIENT_REQUIRE_REDIS=1 (CI sets it).
    """
    try:
        server = RedisServer()
    except FileNotFoundError as error:
        if os.environ.get("LLMCLIENT_REQUIRE_REDIS") == "1":
            raise
        pytest.skip(str(error))
    with server:
        yield server
