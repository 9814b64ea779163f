"""`BatchJob`: many chat requests answered through OpenAI's Batch API, resumable.

A job uploads its requests as JSONL input files (`files.create`, purpose "batch"), at most
`max_requests` lines and `max_bytes` bytes each, makes one batch of each (`batches.create`,
endpoint /v1/chat/completions, completion window 24h), polls them (`batches.retrieve`, waits
growing from `poll_interval` to `max_poll_interval`), downloads their output and error files
(`files.content`) and hands out one `BatchResult` per request. The uploaded files and the
batches are recorded in a state file as they are made, so a job started again with the same
state picks up the batches it already paid for.

The job drives the other modules of the package: `_files` (input lines and downloaded rows),
`_polling` (SDK calls with retries, polls), `_rows` (answers as results) and `_state`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import openai
from openai.types import Batch

from llmclient.batch._files import read_rows, request_line, split_files
from llmclient.batch._polling import call, find_batch, retrieved, wait_ended
from llmclient.batch._rows import answer_online, completion_of, ended_at, row_error, unrun
from llmclient.batch._state import Chunk, JobState
from llmclient.batch._types import (
    ENDPOINT,
    MAX_BYTES,
    MAX_REQUESTS,
    TERMINAL,
    BatchFailedError,
    BatchRequest,
    BatchResult,
    BatchRowError,
    OnCancel,
    Retry,
    check_choice,
    check_positive,
    id_key,
)
from llmclient.clients.openai import OpenAIClient
from llmclient.errors import ConfigurationError, LLMError

__all__ = [
    "BatchFailedError",
    "BatchJob",
    "BatchRequest",
    "BatchResult",
    "BatchRowError",
    "submit_batch_job",
]

logger = logging.getLogger("llmclient")


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
        check_choice("retry", retry, ("online", "batch", "none"))
        check_choice("on_cancel", on_cancel, ("report", "resubmit"))
        check_positive("max_rounds", max_rounds, integer=True)
        check_positive("poll_interval", poll_interval)
        check_positive("max_poll_interval", max_poll_interval)
        check_positive("max_requests", max_requests, integer=True)
        check_positive("max_bytes", max_bytes, integer=True)
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
                poll = wait_ended(self._client, chunk.batch_id, self._poll)
                polls[asyncio.create_task(poll)] = chunk

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
                task.add_done_callback(retrieved)
        if online:
            async for result in answer_online(self._client, self._requests, online):
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
            cancel = functools.partial(self._sdk.batches.cancel, chunk.batch_id)
            try:
                batch = await call(self._client, cancel)
            except LLMError as error:
                if error.status_code not in (400, 409):  # it ended meanwhile
                    raise
                continue
            chunk.status = batch.status

    async def refresh(self) -> list[Batch]:
        """The current state of each batch of the job (OpenAI's `Batch` objects)."""
        found = []
        for batch_id in self.batch_ids:
            retrieve = functools.partial(self._sdk.batches.retrieve, batch_id)
            found.append(await call(self._client, retrieve))
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
        return request_line(self._client, key, request)

    def _split(self, keys: list[str]) -> Iterable[tuple[list[str], bytes]]:
        """The keys' lines in files of at most `max_requests` lines and `max_bytes` bytes."""
        return split_files(self._client, self._requests, keys, self._max_requests, self._max_bytes)

    async def _launch(self, keys: list[str], round_: int) -> None:
        """Upload the keys' files and make a batch of each, saving the state after each step."""
        for ids, content in self._split(keys):
            name = f"llmclient-batch-{len(self._state.chunks) + 1}.jsonl"
            upload = functools.partial(
                self._sdk.files.create, file=(name, content, "application/jsonl"), purpose="batch"
            )
            uploaded = await call(self._client, upload)
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
            if look_first and (found := await find_batch(self._client, file_id)) is not None:
                return found
            try:
                return await self._sdk.batches.create(
                    input_file_id=file_id,
                    endpoint=ENDPOINT,
                    completion_window="24h",
                    metadata=self._metadata,
                )
            except openai.APIError:  # it may have been made all the same: never pay twice
                found = await find_batch(self._client, file_id)
                if found is None:
                    raise
                return found

        batch = await call(self._client, create)
        chunk.batch_id, chunk.status = batch.id, batch.status
        self._save()
        logger.info("batch job: created %s from %s", batch.id, file_id)

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
        elapsed = float(max(0, ended_at(batch) - batch.created_at))
        later = {k for c in self._state.chunks if not c.done and c is not chunk for k in c.ids}
        last_round = chunk.round + 1 >= self._max_rounds
        pending = set(self._unanswered(chunk.ids))

        def judge(key: str, row: dict[str, Any] | None) -> BatchResult | None:
            request_id = self._requests[key].id
            response = row.get("response") if row else None
            if isinstance(response, dict) and response.get("status_code") == 200:
                outcome = completion_of(self._client, response.get("body"), elapsed)
                return BatchResult(request_id, *outcome, batch_id=batch.id)
            if isinstance(response, dict):
                error: LLMError = row_error(self._client, response)
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
            code, message = unrun(row, batch.status)
            resubmit = batch.status != "cancelled" or self._on_cancel == "resubmit"
            if resubmit and not last_round:
                again.append(key)
                return None
            failure = BatchRowError(code, message, batch.id, provider="openai")
            return BatchResult(request_id, error=failure, batch_id=batch.id)

        for file_id in (batch.output_file_id, batch.error_file_id):
            for row in await read_rows(self._client, file_id):
                key = row["custom_id"]
                if key in pending:
                    pending.discard(key)
                    if (result := judge(key, row)) is not None:
                        yield result
        for key in chunk.ids:
            if key in pending and (result := judge(key, None)) is not None:
                yield result


async def submit_batch_job(
    client: OpenAIClient, requests: Iterable[BatchRequest], **options: Any
) -> BatchJob:
    """A `BatchJob(client, **options)` with `requests` submitted: uploaded and batched."""
    job = BatchJob(client, **options)
    await job.submit(requests)
    return job
