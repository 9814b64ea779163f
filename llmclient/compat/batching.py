"""`BatchRequestManager`: GraphGen's request collector, on the client's own limit. It batches
nothing itself (the name is GraphGen's): `llmclient.coalesce.MicroBatcher` is what batches.

Chat APIs take one conversation per request, so nothing is merged: requests are gathered into
groups of `batch_size` (or whatever arrived within `max_wait_time`) and each is sent on its own,
under the client's endpoint slots like every other call. Embeddings are different: concurrent
`embed` calls really share provider requests (see `BaseLLMClient.embed`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmclient._aclose import AsyncClosing
from llmclient._checks import check_int, check_number
from llmclient.coalesce import MicroBatcher

if TYPE_CHECKING:
    from llmclient.clients.base import BaseLLMClient
    from llmclient.types import MessageInput

__all__ = ["BatchRequestManager"]


@dataclass(frozen=True, slots=True)
class _Request:
    prompt: str
    history: Sequence[str] | Sequence[MessageInput] | None
    extra_params: Mapping[str, Any] = field(default_factory=dict)


class BatchRequestManager(AsyncClosing):
    """Collects `generate_answer` requests (GraphGen's interface) and sends each on its own.

    Requests are released in groups of `batch_size`, or `max_wait_time` s after the first of
    a group arrived; every request is its own provider call under the client's limit, and
    succeeds or fails on its own. `max_concurrent` only narrows the client's limit.
    `add_request` returns the answer; with `enable_batching=False` requests go out at once.
    """

    def __init__(
        self,
        llm_client: BaseLLMClient,
        batch_size: int = 10,
        max_wait_time: float = 0.5,
        enable_batching: bool = True,
        max_concurrent: int | None = None,
    ) -> None:
        check_int("batch_size", batch_size, 1)
        check_number("max_wait_time", max_wait_time, 0)
        check_int("max_concurrent", max_concurrent, 1, optional=True)
        self.llm_client = llm_client
        self.batch_size = batch_size
        self.max_wait_time = float(max_wait_time)
        self.enable_batching = enable_batching
        self.max_concurrent = max_concurrent
        self._semaphore = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self._batcher: MicroBatcher[_Request, str] = MicroBatcher(
            self._send_batch, batch_size, self.max_wait_time
        )
        self._closed = False

    @property
    def pending(self) -> int:
        """Requests queued for the next batch."""
        return self._batcher.pending

    async def add_request(
        self,
        prompt: str,
        history: Sequence[str] | Sequence[MessageInput] | None = None,
        extra_params: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue one request and return its answer once its batch has been processed."""
        if self._closed:
            raise RuntimeError("BatchRequestManager is closed")
        request = _Request(prompt, history, dict(extra_params or {}))
        if not self.enable_batching:
            return await self._answer(request)
        (answer,) = await self._batcher.submit([request])
        return answer

    async def flush(self) -> None:
        """Send every queued request now and wait until all batches under way are done."""
        await self._batcher.flush()

    async def aclose(self) -> None:
        """Flush, then refuse new requests."""
        self._closed = True
        await self.flush()

    async def _answer(self, request: _Request) -> str:
        if self._semaphore is None:
            return await self._generate(request)
        async with self._semaphore:
            return await self._generate(request)

    async def _generate(self, request: _Request) -> str:
        return await self.llm_client.generate_answer(
            request.prompt, request.history, **request.extra_params
        )

    async def _send_batch(self, batch: list[tuple[_Request, asyncio.Future[str]]]) -> None:
        """Process a batch's requests concurrently; a caller that leaves cancels its request."""
        tasks = []
        for request, future in batch:
            task = asyncio.ensure_future(self._answer(request))
            task.add_done_callback(functools.partial(_settle, future))
            future.add_done_callback(functools.partial(_cancel_if_abandoned, task))
            tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)


def _cancel_if_abandoned(task: asyncio.Future[str], future: asyncio.Future[str]) -> None:
    if future.cancelled():
        task.cancel()


def _settle(future: asyncio.Future[str], task: asyncio.Future[str]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif (error := task.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())
