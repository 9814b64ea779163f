"""OpenAI's Files and Batch APIs for the simulated server: `/v1/files` and `/v1/batches`.

Files: see `_files` (this service routes their paths to it). Batches: create (`input_file_id`,
`endpoint`, `completion_window`, `metadata`), retrieve, list (newest first, `limit` and `after`)
and cancel, with OpenAI's `Batch` shape. A batch moves `validating` -> `in_progress` ->
`finalizing` -> `completed`, one step per `pace` seconds; its rows are answered one by one
(`row_time` seconds each) with the simulator's deterministic chat completions. An input file
that fails validation (a line that is not JSON, a missing or repeated `custom_id`, a `url` other
than the batch's endpoint, too many lines) makes the batch `failed` with `errors.data`; a batch
still running `window` seconds after its creation becomes `expired`, its answered rows in the
output file and the others in the error file (code `batch_expired`); `cancel` makes it
`cancelling`, then `cancelled` after `pace` seconds (the unanswered rows in the error file, code
`batch_cancelled`). A row whose body the chat endpoint would refuse is answered in the error
file with its 400; `inject_row_error` makes the next rows answer with a given status,
`inject_batch_failure` fails the next batch's validation with a given error, and
`lose_create_answers` makes batches whose answer never arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from . import _protocols as proto
from ._batchinput import MAX_REQUESTS, validate
from ._files import MAX_FILE_BYTES, FileStore, StoredFile
from ._http import DropConnection, Request
from ._reply import Reply

__all__ = ["ENDPOINTS", "MAX_FILE_BYTES", "MAX_REQUESTS", "BatchService", "StoredFile"]

ENDPOINTS = ("/v1/chat/completions",)
_BATCH_PATH = re.compile(r"/v1/batches/([^/]+)(/cancel)?")
_RUNNING = ("validating", "in_progress", "finalizing")
_EXPIRED = "This request could not be executed before the completion window expired."
_CANCELLED = "This request was not executed because the batch was cancelled."


@dataclass(slots=True)
class _Batch:
    info: dict[str, Any]
    deadline: float  # time.monotonic() at which the completion window ends
    failure: list[dict[str, Any]] | None = None  # injected: its validation fails so
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class _RowError:
    status: int
    message: str


class BatchService:
    """The simulator's files and batches; `server.batches` on a `SimulatedServer`.

    `pace` (seconds per status step), `row_time` (seconds per row) and `window` (seconds
    from creation to expiry; OpenAI's "24h") may be changed at any time. `files` and
    `batches_created` (a list of the created batches' ids) let tests see what was uploaded
    and submitted.
    """

    def __init__(self, *, pace: float = 0.05, row_time: float = 0.0, window: float = 86400.0):
        self.pace = pace
        self.row_time = row_time
        self.window = window
        self.batches_created: list[str] = []
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)
        self._files = FileStore(self._ids)
        self._row_errors: deque[_RowError] = deque()
        self._failures: deque[list[dict[str, Any]]] = deque()
        self._lost_creates = 0

    def inject_row_error(
        self, count: int = 1, *, status: int = 500, message: str = "The server had an error"
    ) -> None:
        """Answer the next `count` batch rows (in any batch) with `status` in the error file."""
        if count < 0:
            raise ValueError("count must be non-negative")
        self._row_errors.extend(_RowError(status, message) for _ in range(count))

    def inject_batch_failure(
        self, code: str = "token_limit_exceeded", message: str = "Enqueued token limit reached."
    ) -> None:
        """Fail the validation of the next batch created, with this error in `errors.data`."""
        self._failures.append([{"code": code, "message": message, "param": None, "line": None}])

    def lose_create_answers(self, count: int = 1) -> None:
        """Make the next `count` batches asked for, then close the connection without the
        answer: a network failure after the server acted, which a client must not answer
        with a second batch."""
        if count < 0:
            raise ValueError("count must be non-negative")
        self._lost_creates += count

    @property
    def files(self) -> dict[str, StoredFile]:
        """The uploaded and produced files by id."""
        return self._files.files

    def status(self, batch_id: str) -> str:
        """A batch's current status."""
        return str(self._batches[batch_id].info["status"])

    async def aclose(self) -> None:
        """Stop every batch still running (the server is stopping)."""
        tasks = [b.task for b in self._batches.values() if b.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- routing --------------------------------------------------------------------------------

    @staticmethod
    def serves(path: str) -> bool:
        """Whether `path` is one of the files or batches paths."""
        return path in ("/v1/files", "/v1/batches") or path.startswith(
            ("/v1/files/", "/v1/batches/")
        )

    async def handle(self, request: Request, reply: Reply, arrival: float) -> None:
        """Answer one request to `/v1/files...` or `/v1/batches...`."""
        try:
            await self._route(request, reply)
        except proto.BadRequest as exc:
            await reply.error(400, str(exc), type_="invalid_request_error")

    async def _route(self, request: Request, reply: Reply) -> None:
        method, path = request.method, request.path
        if await self._files.answer(request, reply):
            return
        if path == "/v1/batches":
            if method == "POST":
                made = self._create(proto.json_object(request.body))
                if self._lost_creates:
                    self._lost_creates -= 1
                    raise DropConnection
                await reply.json(made)
                return
            if method == "GET":
                await reply.json(self._batch_list(request.query))
                return
        elif (found := _BATCH_PATH.fullmatch(path)) is not None:
            batch = self._batches.get(found[1])
            if batch is None:
                await reply.error(
                    404, f"No batch found with id '{found[1]}'.", type_="invalid_request_error"
                )
                return
            if found[2] and method == "POST":
                await reply.json(self._cancel(batch))
                return
            if not found[2] and method == "GET":
                await reply.json(batch.info)
                return
        await reply.error(404, f"Invalid URL ({method} {path})", type_="invalid_request_error")

    # --- batches --------------------------------------------------------------------------------

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
        window = body.get("completion_window")
        if endpoint not in ENDPOINTS:
            raise proto.BadRequest(f"endpoint must be one of {list(ENDPOINTS)}, got {endpoint!r}")
        if window != "24h":
            raise proto.BadRequest(f"completion_window must be '24h', got {window!r}")
        stored = self.files.get(file_id) if isinstance(file_id, str) else None
        if stored is None:
            raise proto.BadRequest(f"No such File object: {file_id}")
        if stored.info["purpose"] != "batch":
            raise proto.BadRequest(
                f"File {file_id} has purpose {stored.info['purpose']!r}; a batch's input file "
                "must be uploaded with purpose 'batch'"
            )
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise proto.BadRequest("metadata must be an object")
        now = int(time.time())
        batch_id = f"batch_sim{next(self._ids):012d}"
        info: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": endpoint,
            "model": None,
            "errors": None,
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + int(self.window),
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "usage": None,
            "metadata": metadata,
        }
        batch = _Batch(
            info,
            time.monotonic() + self.window,
            self._failures.popleft() if self._failures else None,
        )
        self._batches[batch_id] = batch
        self.batches_created.append(batch_id)
        batch.task = asyncio.get_running_loop().create_task(self._run(batch, stored.content))
        return info

    def _batch_list(self, query: str) -> dict[str, Any]:
        params = parse_qs(query)
        try:
            limit = int(params.get("limit", ["20"])[0])
        except ValueError:
            raise proto.BadRequest("limit must be an integer") from None
        newest = [b.info for b in reversed(self._batches.values())]
        after = params.get("after", [None])[0]
        if after is not None:
            ids = [info["id"] for info in newest]
            newest = newest[ids.index(after) + 1 :] if after in ids else []
        page = newest[: max(1, min(limit, 100))]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(newest) > len(page),
        }

    def _cancel(self, batch: _Batch) -> dict[str, Any]:
        info = batch.info
        if info["status"] not in _RUNNING:
            raise proto.BadRequest(f"Cannot cancel a batch with status {info['status']!r}.")
        info["status"] = "cancelling"
        info["cancelling_at"] = int(time.time())
        batch.cancel.set()
        return info

    async def _step(self, batch: _Batch) -> None:
        """Wait one status step, or less if the batch is cancelled meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(batch.cancel.wait(), self.pace)

    async def _run(self, batch: _Batch, content: bytes) -> None:
        info = batch.info
        await self._step(batch)
        rows, problems = validate(content, str(info["endpoint"]))
        problems = problems or (batch.failure or [])
        if rows and isinstance(rows[0].get("body"), dict):
            info["model"] = rows[0]["body"].get("model")
        if problems and not batch.cancel.is_set():
            info.update(status="failed", failed_at=int(time.time()))
            info["errors"] = {"object": "list", "data": problems}
            return
        counts = info["request_counts"]
        counts["total"] = len(rows)
        if not batch.cancel.is_set():
            info.update(status="in_progress", in_progress_at=int(time.time()))
        output: list[bytes] = []
        errors: list[bytes] = []
        done = 0
        for row in rows:
            if batch.cancel.is_set() or time.monotonic() >= batch.deadline:
                break
            if self.row_time > 0:
                await asyncio.sleep(self.row_time)
            elif done % 100 == 99:
                await asyncio.sleep(0)
            line, ok = self._answer(row)
            (output if ok else errors).append(line)
            counts["completed" if ok else "failed"] += 1
            done += 1
        if batch.cancel.is_set():
            errors += [self._unrun(row, "batch_cancelled", _CANCELLED) for row in rows[done:]]
            await asyncio.sleep(self.pace)
            self._finish(batch, output, errors, status="cancelled", stamp="cancelled_at")
        elif done < len(rows):
            errors += [self._unrun(row, "batch_expired", _EXPIRED) for row in rows[done:]]
            self._finish(batch, output, errors, status="expired", stamp="expired_at")
        else:
            info.update(status="finalizing", finalizing_at=int(time.time()))
            await self._step(batch)
            self._finish(batch, output, errors, status="completed", stamp="completed_at")

    def _finish(
        self, batch: _Batch, output: list[bytes], errors: list[bytes], *, status: str, stamp: str
    ) -> None:
        info = batch.info
        if output:
            name = f"{info['id']}_output.jsonl"
            stored = self._files.store(name, "batch_output", b"".join(output))
            info["output_file_id"] = stored.info["id"]
        if errors:
            name = f"{info['id']}_error.jsonl"
            stored = self._files.store(name, "batch_output", b"".join(errors))
            info["error_file_id"] = stored.info["id"]
        info["status"] = status
        info[stamp] = int(time.time())

    def _answer(self, row: dict[str, Any]) -> tuple[bytes, bool]:
        """One row's line in the output file (True) or the error file (False)."""
        request_id = f"req_sim{next(self._ids):012d}"
        if self._row_errors:
            fault = self._row_errors.popleft()
            body: dict[str, Any] = proto.openai_error(fault.message, "server_error")
            return _line(row, fault.status, request_id, body), False
        try:
            gen = proto.parse_openai_chat(row["body"])
        except proto.BadRequest as exc:
            body = proto.openai_error(str(exc), "invalid_request_error")
            return _line(row, 400, request_id, body), False
        if gen.stream:
            body = proto.openai_error("stream is not supported in a batch", "invalid_request_error")
            return _line(row, 400, request_id, body), False
        completion = proto.openai_completion(gen, f"chatcmpl-{request_id}")
        return _line(row, 200, request_id, completion), True

    def _unrun(self, row: dict[str, Any], code: str, message: str) -> bytes:
        record = {
            "id": f"batch_req_sim{next(self._ids):012d}",
            "custom_id": row["custom_id"],
            "response": None,
            "error": {"code": code, "message": message},
        }
        return (json.dumps(record) + "\n").encode()


def _line(row: dict[str, Any], status: int, request_id: str, body: dict[str, Any]) -> bytes:
    record = {
        "id": f"batch_req_{request_id.removeprefix('req_')}",
        "custom_id": row["custom_id"],
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }
    return (json.dumps(record) + "\n").encode()
