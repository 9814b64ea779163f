"""Pytest fixtures that run `SimulatedServer` instances for a test and stop them afterwards.

Enable with `pytest_plugins = ["llmclient.testing.pytest_plugin"]` in a conftest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from .server import SimulatedServer

ServerFactory = Callable[..., Awaitable[SimulatedServer]]
"""`await factory(**kwargs)`: a started `SimulatedServer(**kwargs)`."""


@pytest_asyncio.fixture
async def simulated_server() -> AsyncIterator[SimulatedServer]:
    """A started `SimulatedServer` with default settings."""
    async with SimulatedServer() as server:
        yield server


@pytest_asyncio.fixture
async def simulated_server_factory() -> AsyncIterator[ServerFactory]:
    """Starts servers with the given settings; all are stopped at teardown."""
    servers: list[SimulatedServer] = []

    async def factory(**kwargs: Any) -> SimulatedServer:
        server = SimulatedServer(**kwargs)
        await server.start()
        servers.append(server)
        return server

    try:
        yield factory
    finally:
        for server in servers:
            await server.stop()
