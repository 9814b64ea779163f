"""Answering one request in the style of its protocol, counting what is sent."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace

from . import _protocols as proto
from ._http import Responder

JSON_TYPE = ("content-type", "application/json; charset=utf-8")


@dataclass
class ServerStats:
    """Counters of a `SimulatedServer`.

    `server.stats` is the live object, updated as requests come and go; `snapshot()` returns an
    independent copy. `statuses` counts the status of every answer sent (a stream at its head),
    plus "drop" and "hang" for those faults; `completed` counts valid 200 answers fully sent
    (fault answers never count, even those with status 200); `disconnected` counts requests
    cancelled before their answer was complete (the client left, or the server stopped).
    """

    requests: int = 0
    completed: int = 0
    in_flight: int = 0
    waiting: int = 0
    peak_in_flight: int = 0
    peak_waiting: int = 0
    disconnected: int = 0
    embed_inputs: int = 0
    statuses: Counter[int | str] = field(default_factory=Counter)
    by_path: Counter[str] = field(default_factory=Counter)
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), path)
    bodies: list[object] = field(default_factory=list)  # each POST's JSON body, as received

    def snapshot(self) -> ServerStats:
        """An independent copy of the current values."""
        return replace(
            self,
            statuses=Counter(self.statuses),
            by_path=Counter(self.by_path),
            arrivals=list(self.arrivals),
        )


class Reply:
    """Answers one request in the style of its protocol and counts what is sent.

    `json`, `start`/`write`/`end` send valid answers (counted as completed when whole and 200);
    `raw` and `head` send fault answers, which count by status only.
    """

    __slots__ = ("headers", "openai", "responder", "stats")

    def __init__(self, responder: Responder, stats: ServerStats, openai: bool) -> None:
        self.responder = responder
        self.stats = stats
        self.openai = openai
        self.headers: list[tuple[str, str]] = []  # extra headers of successful answers

    async def json(
        self, payload: object, status: int = 200, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.stats.statuses[status] += 1
        extra = self.headers if headers is None else headers
        await self.responder.send(status, [JSON_TYPE, *extra], dumps(payload))
        if status == 200:
            self.stats.completed += 1

    async def page(self, content_type: str, body: bytes) -> None:
        """Send a 200 answer that is no inference (a server's status page): not `completed`."""
        self.stats.statuses[200] += 1
        await self.responder.send(200, [("content-type", content_type)], body)

    async def error(
        self,
        status: int,
        message: str,
        *,
        type_: str,
        code: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        payload = (
            proto.openai_error(message, type_, code) if self.openai else proto.ollama_error(message)
        )
        await self.json(payload, status, headers or [])

    async def start(self, content_type: str) -> None:
        self.stats.statuses[200] += 1
        await self.responder.start(200, [("content-type", content_type), *self.headers])

    async def write(self, data: bytes) -> None:
        await self.responder.write(data)

    async def end(self, data: bytes) -> None:
        await self.responder.end(data)
        self.stats.completed += 1

    async def raw(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Send a whole fault answer: counted in `statuses`, never as completed."""
        self.stats.statuses[status] += 1
        await self.responder.send(status, headers, body)

    async def head(self, headers: list[tuple[str, str]], *, length: int | None = None) -> None:
        """Start a 200 fault answer (chunked, or announcing `length` bytes); finish it with
        `write` and `responder.end`, or not at all."""
        self.stats.statuses[200] += 1
        await self.responder.start(200, headers, length=length)


def dumps(payload: object) -> bytes:
    """Compact JSON, as the servers send it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def sse(payload: object) -> bytes:
    """One server-sent event carrying `payload` as its data."""
    return b"data: " + dumps(payload) + b"\n\n"


def ndjson(payload: object) -> bytes:
    """One NDJSON line."""
    return dumps(payload) + b"\n"
