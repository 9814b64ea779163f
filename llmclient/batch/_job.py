"""`BatchJob`: many chat requests answered through OpenAI's Batch API, resumable.

A job uploads its requests as JSONL input files (`files.create`, purpose "batch"), at most
`max_requests` lines and `max_bytes` bytes each, makes one batch of each (`batches.create`,
endpoint /v1/chat/completions, completion window 24h), polls them (`batches.retrieve`, waits
growing from `poll_interval` to `max_poll_interval`), downloads their output and error files
(`files.content`) and hands out one `BatchResult` per request. The uploaded files and the
batches are recorded in a state file as they are made, so a job started again with the same
state picks up the batches it already paid for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import json
import logging
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx2
import openai
from openai.types import Batch
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from llmclient.batch._state import Chunk, JobState
from llmclient.clients.openai import OpenAIClient
from llmclient.clients.params import messages_from
from llmclient.errors import ConfigurationError, ErrorKind, LLMError, MalformedResponseError
from llmclient.fanout import iterate_concurrent
from llmclient.types import Completion, MessageInput

__all__ = [
    "BatchFailedError",
    "BatchJob",
    "BatchRequest",
    "BatchResult",
    "BatchRowError",
    "submit_batch_job",
]

MAX_REQUESTS = 50_000  # OpenAI's limit of requests per batch input file
MAX_BYTES = 200_000_000  # and of bytes per file (200 MB)
ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_SEARCHED = 500  # newest batches searched for one whose creation was not recorded
logger = logging.getLogger("llmclient")
_T = TypeVar("_T")
Retry = Literal["online", "batch", "none"]
OnCancel = Literal["report", "resubmit"]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request of a batch job: its id (unique in the job), prompt or messages, and the
    call's keywords (sampling parameters, `model`) as `generate` takes them."""

    id: str | int
    prompt: str | Sequence[MessageInput]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The one outcome of a request: a `completion`, or an `error`.

    `batch_id` names the batch that answered it; None when it was answered online (a retry of
    a row the batch failed). A completion's `latency` is its batch's time from creation to
    its end.
    """

    id: str | int
    completion: Completion | None = None
    error: Exception | None = None
    batch_id: str | None = None


class BatchFailedError(LLMError):
    """OpenAI refused a batch's input file (status "failed"); `errors` holds its reasons,
    each a dict of `code`, `message`, `line` and `param`."""

    kind = ErrorKind.INVALID_REQUEST
    fatal = True

    def __init__(self, batch_id: str, errors: list[dict[str, Any]], **kwargs: Any) -> None:
        self.batch_id = batch_id
        self.errors = errors
        shown = "; ".join(
            f"line {e.get('line')}: {e.get('code')}: {e.get('message')}"
            if e.get("line") is not None
            else f"{e.get('code')}: {e.get('message')}"
            for e in errors[:3]
        )
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(f"batch {batch_id} failed: {shown or 'no reason given'}{more}", **kwargs)


class BatchRowError(LLMError):
    """A request its batch never ran: `code` is "batch_expired" (the completion window
    ended first) or "batch_cancelled"."""

    kind = ErrorKind.TIMEOUT

    def __init__(self, code: str, message: str, batch_id: str, **kwargs: Any) -> None:
        self.code = code
        self.batch_id = batch_id
        super().__init__(f"{message} (batch {batch_id}: {code})", **kwargs)


def id_key(value: str | int) -> str:
    """The key an id is known by (its JSON text, also the rows' `custom_id`): `1` and `"1"`
    are different ids."""
    return json.dumps(value, ensure_ascii=False)


class BatchJob:
    """Requests answered through OpenAI's Batch API by an `OpenAIClient`.

    `state` is the path of the job's state file (None: in memory, nothing to resume). Rows a
    batch answers with a retryable error (429, 5xx) are retried `online` through the client
    (its limits and retries), in a new `batch`, or not at all (`none`: their error is the
    result). Rows of an expired batch go in a new batch; those of a cancelled one are reported
    as errors (`on_cancel="report"`) or resubmitted (`"resubmit"`). A request goes in at
    most `max_rounds` batches in all.
    """

    def __init__(
        self,
        client: OpenAIClient,
        *,
        state: str | os.PathLike[str] | None = None,
        retry: Retry = "online",
        on_cancel: OnCancel = "report",
        max_rounds: int = 3,
        poll_interval: float = 5.0,
        max_poll_interval: float = 60.0,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int = MAX_BYTES,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(client, OpenAIClient) or client.provider != "openai":
            name = getattr(client, "provider", type(client).__name__)
            raise ConfigurationError(
                f"client: the Batch API is OpenAI's; got a {name!r} client (use OpenAIClient)"
            )
        if client.settings.pool is not None:
            raise ConfigurationError(
                f"client: a batch job talks to one server, not a pool ({client.endpoint_name})"
            )
        _check_choice("retry", retry, ("online", "batch", "none"))
        _check_choice("on_cancel", on_cancel, ("report", "resubmit"))
        _check_positive("max_rounds", max_rounds, integer=True)
        _check_positive("poll_interval", poll_interval)
        _check_positive("max_poll_interval", max_poll_interval)
        _check_positive("max_requests", max_requests, integer=True)
        _check_positive("max_bytes", max_bytes, integer=True)
        if max_requests > MAX_REQUESTS or max_bytes > MAX_BYTES:
            raise ConfigurationError(
                f"max_requests={max_requests!r}, max_bytes={max_bytes!r}: OpenAI takes at most "
                f"{MAX_REQUESTS} requests and {MAX_BYTES} bytes per batch file"
            )
        self._client = client
        self._retry = retry
        self._on_cancel = on_cancel
        self._max_rounds = max_rounds
        self._poll = (float(poll_interval), float(max(poll_interval, max_poll_interval)))
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._metadata = dict(metadata) if metadata else None
        path = None if state is None else Path(state)
        self._state = JobState.load(path, client.settings.base_url)
        self._requests: dict[str, BatchRequest] = {}
        self._handed: set[str] = set()
        self._resumed = False

    @property
    def batch_ids(self) -> list[str]:
        """The ids of the job's batches, in the order they were created."""
        return [c.batch_id for c in self._state.chunks if c.batch_id is not None]

    @property
    def file_ids(self) -> list[str]:
        """The ids of the input files the job uploaded."""
        return [c.file_id for c in self._state.chunks]

    async def submit(self, requests: Iterable[BatchRequest]) -> list[str]:
        """Check every request, then upload and batch those not in a batch of the state yet;
        return the ids of the job's batches. A bad request raises `ConfigurationError` naming
        its id, before anything is uploaded."""
        new: list[str] = []
        for request in requests:
            key = self._check(request)
            if key in self._requests:
                raise ConfigurationError(f"requests: id {key} appears twice; ids must be unique")
            self._requests[key] = request
            new.append(key)
        self._save()  # a state that cannot be written is refused before anything is uploaded
        await self._resume()
        submitted = self._state.submitted()
        await self._launch([key for key in new if key not in submitted], 0)
        return self.batch_ids

    async def results(self) -> AsyncIterator[BatchResult]:
        """One result per submitted request, as each batch ends; then those retried online.

        A batch that fails validation raises `BatchFailedError` (its rows stay unanswered:
        a new run submits them again); a fatal error of an online retry is raised too.
        """
        await self._resume()
        polls: dict[asyncio.Task[Batch], Chunk] = {}
        online: list[str] = []

        def watch(chunk: Chunk) -> None:
            if chunk.batch_id is not None and any(self._unanswered(chunk.ids)):
                polls[asyncio.create_task(self._wait(chunk.batch_id))] = chunk

        for chunk in self._state.chunks:
            if not chunk.done:
                watch(chunk)
        try:
            while polls:
                finished, _ = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    chunk = polls.pop(task)
                    batch = task.result()
                    again: list[str] = []
                    async for result in self._collect(chunk, batch, again, online):
                        self._handed.add(id_key(result.id))
                        yield result
                    before = len(self._state.chunks)
                    await self._launch(again, chunk.round + 1)
                    chunk.done = True
                    self._save()
                    for fresh in self._state.chunks[before:]:
                        watch(fresh)
        finally:
            for task in polls:
                task.cancel()
                task.add_done_callback(_retrieve)
        if online:
            async for result in self._answer_online(online):
                self._handed.add(id_key(result.id))
                yield result

    async def wait(self) -> list[BatchResult]:
        """Every result (see `results`), in the order they came."""
        return [result async for result in self.results()]

    async def cancel(self) -> None:
        """Ask OpenAI to cancel every batch of the job that is still running."""
        for chunk in self._state.chunks:
            if chunk.batch_id is None or chunk.done or chunk.status in TERMINAL:
                continue
            batch_id = chunk.batch_id
            try:
                batch = await self._call(functools.partial(self._sdk.batches.cancel, batch_id))
            except LLMError as error:
                if error.status_code not in (400, 409):  # it ended meanwhile
                    raise
                continue
            chunk.status = batch.status

    async def refresh(self) -> list[Batch]:
        """The current state of each batch of the job (OpenAI's `Batch` objects)."""
        found = []
        for batch_id in self.batch_ids:
            found.append(await self._call(functools.partial(self._sdk.batches.retrieve, batch_id)))
        return found

    # --- requests and input files ------------------------------------------------------------

    def _save(self) -> None:
        """Record the state; a state that cannot be written stops the job (fatal), since a
        batch made but not recorded could be paid for twice."""
        try:
            self._state.save()
        except OSError as error:
            raise ConfigurationError(
                f"state={str(self._state.path)!r}: cannot write it "
                f"({error.strerror or error}); the batches recorded so far are kept in it"
            ) from None

    @property
    def _sdk(self) -> openai.AsyncOpenAI:
        return self._client._sdk

    def _check(self, request: BatchRequest) -> str:
        if isinstance(request.id, bool) or not isinstance(request.id, str | int):
            raise ConfigurationError(
                f"requests: id must be a string or an integer, got {request.id!r}"
            )
        key = id_key(request.id)
        try:
            self._line(key, request)
        except LLMError as error:
            raise ConfigurationError(f"requests: id {key}: {error.message}") from None
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"requests: id {key}: {error}") from None
        return key

    def _line(self, key: str, request: BatchRequest) -> bytes:
        """The request as one line of an input file: its body is what `generate` would send."""
        client = self._client
        chat = client._request(messages_from(request.prompt), dict(request.params))
        body = client._arguments(chat)
        body.update(body.pop("extra_body", None) or {})
        line = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
        return (json.dumps(line, ensure_ascii=False) + "\n").encode()

    def _split(self, keys: list[str]) -> Iterable[tuple[list[str], bytes]]:
        """The keys' lines in files of at most `max_requests` lines and `max_bytes` bytes."""
        ids: list[str] = []
        lines: list[bytes] = []
        size = 0
        for key in keys:
            line = self._line(key, self._requests[key])
            if len(line) > self._max_bytes:
                raise ConfigurationError(
                    f"requests: id {key} takes {len(line)} bytes, more than max_bytes="
                    f"{self._max_bytes} of one batch file"
                )
            if ids and (len(ids) == self._max_requests or size + len(line) > self._max_bytes):
                yield ids, b"".join(lines)
                ids, lines, size = [], [], 0
            ids.append(key)
            lines.append(line)
            size += len(line)
        if ids:
            yield ids, b"".join(lines)

    async def _launch(self, keys: list[str], round_: int) -> None:
        """Upload the keys' files and make a batch of each, saving the state after each step."""
        for ids, content in self._split(keys):
            name = f"llmclient-batch-{len(self._state.chunks) + 1}.jsonl"
            upload = functools.partial(
                self._sdk.files.create, file=(name, content, "application/jsonl"), purpose="batch"
            )
            uploaded = await self._call(upload)
            chunk = Chunk(uploaded.id, ids, round_)
            self._state.chunks.append(chunk)
            self._save()
            logger.info("batch job: uploaded %s (%d requests)", uploaded.id, len(ids))
            await self._create(chunk)

    async def _create(self, chunk: Chunk, *, look_first: bool = False) -> None:
        """Make the batch of an uploaded file, unless one was made but not recorded: after a
        failed create, or first of all with `look_first` (a file recorded by an earlier run)."""
        file_id = chunk.file_id

        async def create() -> Batch:
            if look_first and (found := await self._find_batch(file_id)) is not None:
                return found
            try:
                return await self._sdk.batches.create(
                    input_file_id=file_id,
                    endpoint=ENDPOINT,
                    completion_window="24h",
                    metadata=self._metadata,
                )
            except openai.APIError:  # it may have been made all the same: never pay twice
                found = await self._find_batch(file_id)
                if found is None:
                    raise
                return found

        batch = await self._call(create)
        chunk.batch_id, chunk.status = batch.id, batch.status
        self._save()
        logger.info("batch job: created %s from %s", batch.id, file_id)

    async def _find_batch(self, file_id: str) -> Batch | None:
        """The newest batch made from `file_id`, among the latest `_SEARCHED`."""
        seen = 0
        async for batch in self._sdk.batches.list(limit=100):
            if batch.input_file_id == file_id:
                return batch
            seen += 1
            if seen >= _SEARCHED:
                break
        return None

    async def _resume(self) -> None:
        """Once: make the batch of each file the state holds without one (a run killed between
        the upload and the batch's creation), unless the batch exists already."""
        if self._resumed:
            return
        self._resumed = True
        for chunk in self._state.chunks:
            if chunk.batch_id is None and not chunk.done:
                await self._create(chunk, look_first=True)

    # --- polling and results ------------------------------------------------------------------

    async def _wait(self, batch_id: str) -> Batch:
        """Poll a batch until it ends, waiting longer between polls up to the cap."""
        delay, cap = self._poll
        seen: str | None = None
        while True:
            batch = await self._call(lambda: self._sdk.batches.retrieve(batch_id))
            if batch.status != seen:
                seen = batch.status
                counts = batch.request_counts
                done = f" ({counts.completed + counts.failed}/{counts.total})" if counts else ""
                logger.info("batch job: %s is %s%s", batch_id, seen, done)
            if batch.status in TERMINAL:
                return batch
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, cap)

    def _unanswered(self, keys: Iterable[str]) -> Iterable[str]:
        return (k for k in keys if k in self._requests and k not in self._handed)

    async def _collect(
        self, chunk: Chunk, batch: Batch, again: list[str], online: list[str]
    ) -> AsyncIterator[BatchResult]:
        """The results of an ended batch, row by row as its files are read; the keys to send
        again go in `again` (a new batch) or `online`."""
        chunk.status = batch.status
        if batch.status == "failed":
            chunk.done = True
            self._save()
            errors = batch.errors.data if batch.errors and batch.errors.data else []
            raise BatchFailedError(
                batch.id,
                [e.model_dump() for e in errors],
                provider="openai",
                endpoint=self._client.endpoint_name,
            )
        elapsed = float(max(0, _ended_at(batch) - batch.created_at))
        later = {k for c in self._state.chunks if not c.done and c is not chunk for k in c.ids}
        last_round = chunk.round + 1 >= self._max_rounds
        pending = set(self._unanswered(chunk.ids))

        def judge(key: str, row: dict[str, Any] | None) -> BatchResult | None:
            request_id = self._requests[key].id
            response = row.get("response") if row else None
            if isinstance(response, dict) and response.get("status_code") == 200:
                outcome = self._completion(response.get("body"), elapsed)
                return BatchResult(request_id, *outcome, batch_id=batch.id)
            if isinstance(response, dict):
                error: LLMError = self._row_error(response)
                if (
                    not error.retryable
                    or self._retry == "none"
                    or (self._retry == "batch" and last_round)
                ):
                    return BatchResult(request_id, error=error, batch_id=batch.id)
                if self._retry == "online":
                    online.append(key)
                elif key not in later:
                    again.append(key)
                return None
            if key in later:  # a new batch holds it already (a run stopped after making it)
                return None
            code, message = _unrun(row, batch.status)
            resubmit = batch.status != "cancelled" or self._on_cancel == "resubmit"
            if resubmit and not last_round:
                again.append(key)
                return None
            failure = BatchRowError(code, message, batch.id, provider="openai")
            return BatchResult(request_id, error=failure, batch_id=batch.id)

        for file_id in (batch.output_file_id, batch.error_file_id):
            for row in await self._rows(file_id):
                key = row["custom_id"]
                if key in pending:
                    pending.discard(key)
                    if (result := judge(key, row)) is not None:
                        yield result
        for key in chunk.ids:
            if key in pending and (result := judge(key, None)) is not None:
                yield result

    async def _rows(self, file_id: str | None) -> Iterator[dict[str, Any]]:
        """The lines of an output or error file, parsed one by one as they are read."""
        if file_id is None:
            return iter(())
        content = await self._call(functools.partial(self._sdk.files.content, file_id))
        return _parsed(file_id, content.content)

    def _completion(
        self, body: object, elapsed: float
    ) -> tuple[Completion | None, Exception | None]:
        try:
            parsed = ChatCompletion.model_validate(body)
            completion = self._client._completion(parsed)
        except ValidationError as error:
            problem = f"could not parse the batch's answer: {error}"
            return None, MalformedResponseError(problem, provider="openai")
        except LLMError as error:
            return None, error
        return dataclasses.replace(completion, attempts=1, latency=elapsed), None

    def _row_error(self, response: dict[str, Any]) -> LLMError:
        """A row's error answer as the client classifies the same answer online."""
        status = response.get("status_code")
        status = status if isinstance(status, int) else 500
        body = response.get("body")
        detail = body.get("error") if isinstance(body, dict) else None
        message = str(detail.get("message")) if isinstance(detail, dict) else f"HTTP {status}"
        request = httpx2.Request("POST", self._client.settings.base_url + "/chat/completions")
        answer = httpx2.Response(status, json=body, request=request)
        sdk_error = openai.APIStatusError(message, response=answer, body=body)
        return self._client._classify(sdk_error) or LLMError(message, status_code=status)

    async def _answer_online(self, keys: list[str]) -> AsyncIterator[BatchResult]:
        """The rows a batch failed, asked again through the client."""
        logger.info("batch job: %d failed row(s) retried online", len(keys))

        async def answer(key: str) -> Completion:
            request = self._requests[key]
            return await self._client.generate(request.prompt, **dict(request.params))

        async for index, outcome in iterate_concurrent(
            answer, keys, max_concurrent=self._client.max_workers, return_exceptions=True
        ):
            request_id = self._requests[keys[index]].id
            if isinstance(outcome, Completion):
                yield BatchResult(request_id, completion=outcome)
            elif isinstance(outcome, LLMError) and outcome.fatal:
                raise outcome
            elif isinstance(outcome, Exception):
                yield BatchResult(request_id, error=outcome)
            else:
                raise outcome

    async def _call(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """One SDK call, tried again on a transient error as the client's retry policy says
        (`max_attempts`, waits from `initial_wait` doubling to `max_wait`, a Retry-After up to
        `max_server_wait`); its failure as an `LLMError`."""
        policy = self._client.profile.retry
        wait = policy.initial_wait
        attempt = 1
        while True:
            try:
                return await make()
            except openai.APIError as sdk_error:
                error = self._client._classify(sdk_error)
                if error is None:
                    raise
                error.endpoint = self._client.endpoint_name
                pause = wait if error.retry_after is None else error.retry_after
                if (
                    not error.retryable
                    or attempt >= policy.max_attempts
                    or pause > policy.max_server_wait
                ):
                    error.attempts = attempt
                    raise error from None
                logger.warning("batch job: %s; trying again in %.1fs", error.message, pause)
                await asyncio.sleep(pause)
                wait = min(max(wait * 2, 0.01), policy.max_wait)
                attempt += 1


async def submit_batch_job(
    client: OpenAIClient, requests: Iterable[BatchRequest], **options: Any
) -> BatchJob:
    """A `BatchJob(client, **options)` with `requests` submitted: uploaded and batched."""
    job = BatchJob(client, **options)
    await job.submit(requests)
    return job


def _unrun(row: dict[str, Any] | None, status: str) -> tuple[str, str]:
    """The code and message of a row its batch did not run."""
    error = row.get("error") if row else None
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"]), str(error.get("message") or "not run")
    if status == "expired":
        return "batch_expired", "not run before the batch's completion window ended"
    if status == "cancelled":
        return "batch_cancelled", "not run: the batch was cancelled"
    return "batch_missing", "the batch's output holds no answer for it"


def _parsed(file_id: str, content: bytes) -> Iterator[dict[str, Any]]:
    """The rows of a downloaded file that name a `custom_id`."""
    for raw in io.BytesIO(content):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            logger.warning("batch job: %s holds a line that is not JSON; skipped", file_id)
            continue
        if isinstance(row, dict) and isinstance(row.get("custom_id"), str):
            yield row


def _retrieve(task: asyncio.Task[Batch]) -> None:
    """Mark a poll's outcome as seen, so asyncio does not warn about it."""
    if not task.cancelled():
        task.exception()


def _ended_at(batch: Batch) -> int:
    for stamp in (batch.completed_at, batch.expired_at, batch.cancelled_at, batch.failed_at):
        if stamp is not None:
            return stamp
    return batch.created_at


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigurationError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def _check_positive(name: str, value: object, *, integer: bool = False) -> None:
    number = isinstance(value, int) or (not integer and isinstance(value, float))
    if isinstance(value, bool) or not number or not float(value) > 0:  # type: ignore[arg-type]
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigurationError(f"{name}={value!r}: expected {kind}")
