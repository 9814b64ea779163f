"""HTTP/1.1 plumbing of the simulated server: h11 over asyncio streams.

Owns connections (keep-alive, chunked streaming), client-disconnect detection and shutdown; each
request is handed to one handler coroutine, which is cancelled if its client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import h11

_log = logging.getLogger(__name__)
_READ_SIZE = 65536

HeaderList = Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Request:
    """One received request; `path` is the target without its query string (`query`, without
    the "?"), `headers` the header fields with lower-case names."""

    method: str
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    query: str = ""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower case), None when absent."""
        return next((value for key, value in self.headers if key == name), None)


class DropConnection(Exception):
    """Raised by a handler to close the connection without answering."""


class Responder:
    """Writes the response to one request: whole (`send`) or streamed (`start`, `write`, `end`)."""

    def __init__(self, conn: h11.Connection, writer: asyncio.StreamWriter) -> None:
        self._conn = conn
        self._writer = writer
        self.started = False

    async def send(self, status: int, headers: HeaderList, body: bytes) -> None:
        """Send a complete response with a content-length."""
        self.started = True
        head = [*headers, ("content-length", str(len(body)))]
        out = self._conn.send(h11.Response(status_code=status, headers=head)) or b""
        if body:
            out += self._conn.send(h11.Data(data=body)) or b""
        out += self._conn.send(h11.EndOfMessage()) or b""
        self._writer.write(out)
        await self._writer.drain()

    async def start(self, status: int, headers: HeaderList, *, length: int | None = None) -> None:
        """Send the head of a streamed response: chunked, or announcing `length` bytes."""
        self.started = True
        framing = (
            ("transfer-encoding", "chunked") if length is None else ("content-length", str(length))
        )
        head = [*headers, framing]
        self._writer.write(self._conn.send(h11.Response(status_code=status, headers=head)) or b"")
        await self._writer.drain()

    async def write(self, data: bytes) -> None:
        """Send one chunk of a started response."""
        self._writer.write(self._conn.send(h11.Data(data=data)) or b"")
        await self._writer.drain()

    async def end(self, data: bytes = b"") -> None:
        """Send a last chunk (if any) and finish a started response."""
        out = (self._conn.send(h11.Data(data=data)) or b"") if data else b""
        self._writer.write(out + (self._conn.send(h11.EndOfMessage()) or b""))
        await self._writer.drain()


Handler = Callable[[Request, Responder], Coroutine[Any, Any, None]]


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's outcome as seen, so asyncio does not warn about it."""
    if not task.cancelled():
        task.exception()


class _Connection:
    """One keep-alive connection: reads requests in turn and runs the handler for each."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._conn = h11.Connection(h11.SERVER)
        # A read in progress: it watches for the client leaving while a handler runs, and its data
        # (if any) starts the next request.
        self._read_task: asyncio.Task[bytes] | None = None

    async def serve(self) -> None:
        try:
            while (request := await self._next_request()) is not None:
                if not await self._respond(request):
                    return
                if self._conn.our_state is not h11.DONE or self._conn.their_state is not h11.DONE:
                    return
                self._conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if self._conn.our_state in {h11.IDLE, h11.SEND_RESPONSE}:
                with contextlib.suppress(ConnectionError):
                    await Responder(self._conn, self._writer).send(
                        exc.error_status_hint, [("connection", "close")], b""
                    )
        finally:
            if self._read_task is not None:
                self._read_task.cancel()
                self._read_task.add_done_callback(_retrieve)
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()

    async def _read(self) -> bytes:
        """Next bytes from the client, b"" once it has gone."""
        task, self._read_task = self._read_task, None
        try:
            return await (task if task is not None else self._reader.read(_READ_SIZE))
        except ConnectionError:
            return b""

    async def _next_request(self) -> Request | None:
        head: h11.Request | None = None
        body: list[bytes] = []
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                self._conn.receive_data(await self._read())
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body.append(event.data)
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                target = head.target.decode("ascii", "replace")
                headers = tuple(
                    (name.decode("ascii"), value.decode("latin-1")) for name, value in head.headers
                )
                path, _, query = target.partition("?")
                return Request(head.method.decode("ascii"), path, b"".join(body), headers, query)
            else:  # ConnectionClosed
                return None

    async def _respond(self, request: Request) -> bool:
        """Run the handler for one request; False when the connection must close."""
        responder = Responder(self._conn, self._writer)
        handler = asyncio.create_task(self._handler(request, responder))
        try:
            while True:
                if self._read_task is None:
                    self._read_task = asyncio.create_task(self._reader.read(_READ_SIZE))
                done, _ = await asyncio.wait(
                    (handler, self._read_task), return_when=asyncio.FIRST_COMPLETED
                )
                if handler in done:
                    break
                data = await self._read()
                if not data:  # the client went away: the finally clause cancels the handler
                    return False
                self._conn.receive_data(data)  # pipelined bytes; h11 keeps them for the next cycle
            handler.result()
        except (DropConnection, ConnectionError):
            return False
        except Exception:
            _log.exception(
                "simulated server: handler failed for %s %s", request.method, request.path
            )
            if not responder.started:
                with contextlib.suppress(ConnectionError, h11.LocalProtocolError):
                    await responder.send(
                        500,
                        [("content-type", "application/json")],
                        b'{"error": "simulated server bug"}',
                    )
            return False
        finally:
            if not handler.done():
                handler.cancel()
                await asyncio.wait((handler,))
                _retrieve(handler)
        return True


class HTTPServer:
    """Listens on a TCP port and serves each connection with `handler`."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        """Start listening; returns the bound port."""
        self._server = await asyncio.start_server(self._on_connect, host, port, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback with our own task: asyncio's wrapper task for coroutine callbacks
        # reports cancellation (our shutdown) as an error on Python 3.11.
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await _Connection(reader, writer, self._handler).serve()
        finally:
            self._writers.discard(writer)

    async def stop(self) -> None:
        """Stop listening, cancel every connection and handler, and close all sockets."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        # Abort first: a graceful close would wait for clients that may never read.
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        await server.wait_closed()
