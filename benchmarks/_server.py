"""Run a `SimulatedServer` in its own process, so benchmark figures are the client's alone."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from llmclient.testing import SimulatedServer
from llmclient.testing.server import _INFERENCE_PATHS


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


class _TimedServer(SimulatedServer):
    """A `SimulatedServer` that also records each inference request's time at the server.

    The time runs from arrival to the end of the answer, the wait for a slot included (what a
    client's timeout measures), and `peak_on_wire` counts requests being served or waiting.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # (seconds, "done" | "refused" | "cancelled")
        self.durations: list[tuple[float, str]] = []
        self.on_wire = 0
        self.peak_on_wire = 0

    async def _handle(self, request: Any, responder: Any) -> None:
        if request.path not in _INFERENCE_PATHS:
            await super()._handle(request, responder)
            return
        start = time.monotonic()
        self.on_wire += 1
        self.peak_on_wire = max(self.peak_on_wire, self.on_wire)
        outcome = "cancelled"
        try:
            await super()._handle(request, responder)
            outcome = "done"
        finally:
            self.on_wire -= 1
            took = time.monotonic() - start
            if outcome == "done" and took < 0.9 * self.latency:
                outcome = "refused"  # answered at once (503, 429): it never held a slot
            self.durations.append((took, outcome))

    def report(self) -> dict[str, Any]:
        """Counters, statuses and per-request durations, as plain JSON-able values."""
        st = self.stats
        return {
            "requests": st.requests,
            "completed": st.completed,
            "statuses": {str(k): v for k, v in st.statuses.items()},
            "peak_in_flight": st.peak_in_flight,
            "peak_waiting": st.peak_waiting,
            "peak_on_wire": self.peak_on_wire,
            "durations": self.durations,
        }


def _serve_timed(conn: Connection, options: dict[str, Any]) -> None:
    async def main() -> None:
        async with _TimedServer(**options) as server:
            conn.send(server.url)
            loop = asyncio.get_running_loop()
            while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
                if command == "report":
                    conn.send(server.report())

    asyncio.run(main())


class ServerHandle:
    """A timed server in a child process: its URL, and its report on demand."""

    def __init__(self, url: str, conn: Connection) -> None:
        self.url = url
        self._conn = conn

    def report(self) -> dict[str, Any]:
        """What the server saw so far (see `_TimedServer.report`)."""
        self._conn.send("report")
        report: dict[str, Any] = self._conn.recv()
        return report


@contextmanager
def timed_server_process(**options: Any) -> Iterator[ServerHandle]:
    """Like `server_process`, with per-request times at the server (`handle.report()`)."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve_timed, args=(child, options), daemon=True)
    process.start()
    try:
        yield ServerHandle(parent.recv(), parent)
    finally:
        parent.send("stop")
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
