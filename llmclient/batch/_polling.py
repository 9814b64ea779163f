"""A batch job's SDK calls: each tried again as the client's retry policy says, the polls of
a batch until it ends, and the search for a batch whose creation was not recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import openai
from openai.types import Batch

from llmclient.batch._types import TERMINAL
from llmclient.clients.openai import OpenAIClient

__all__ = ["call", "find_batch", "retrieved", "wait_ended"]

_SEARCHED = 500  # newest batches searched for one whose creation was not recorded
logger = logging.getLogger("llmclient")
_T = TypeVar("_T")


async def call(client: OpenAIClient, make: Callable[[], Awaitable[_T]]) -> _T:
    """One SDK call, tried again on a transient error as the client's retry policy says
    (`max_attempts`, waits from `initial_wait` doubling to `max_wait`, a Retry-After up to
    `max_server_wait`); its failure as an `LLMError`."""
    policy = client.profile.retry
    wait = policy.initial_wait
    attempt = 1
    while True:
        try:
            return await make()
        except openai.APIError as sdk_error:
            error = client._classify(sdk_error)
            if error is None:
                raise
            error.endpoint = client.endpoint_name
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


async def wait_ended(client: OpenAIClient, batch_id: str, poll: tuple[float, float]) -> Batch:
    """Poll a batch until it ends, waiting longer between polls, from `poll[0]` up to
    `poll[1]` seconds."""
    delay, cap = poll
    seen: str | None = None
    while True:
        batch = await call(client, lambda: client._sdk.batches.retrieve(batch_id))
        if batch.status != seen:
            seen = batch.status
            counts = batch.request_counts
            done = f" ({counts.completed + counts.failed}/{counts.total})" if counts else ""
            logger.info("batch job: %s is %s%s", batch_id, seen, done)
        if batch.status in TERMINAL:
            return batch
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, cap)


async def find_batch(client: OpenAIClient, file_id: str) -> Batch | None:
    """The newest batch made from `file_id`, among the latest `_SEARCHED`."""
    seen = 0
    async for batch in client._sdk.batches.list(limit=100):
        if batch.input_file_id == file_id:
            return batch
        seen += 1
        if seen >= _SEARCHED:
            break
    return None


def retrieved(task: asyncio.Task[Batch]) -> None:
    """Mark a poll's outcome as seen, so asyncio does not warn about it."""
    if not task.cancelled():
        task.exception()
