"""Run a `SimulatedServer` in its own process, so benchmark figures are the client's alone."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from llmclient.testing import SimulatedServer


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    async def main() -> None:
        async with SimulatedServer(**options) as server:
            conn.send(server.url)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    asyncio.run(main())


@contextmanager
def server_process(**options: Any) -> Iterator[str]:
    """Start the server with `options` in a child process; yield its URL; stop it after."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(child, options), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
