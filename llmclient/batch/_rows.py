"""A batch job's answers as results: a row's completion or error, classified as the client
classifies the same answer online, and the rows retried online through the client."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import openai
from openai.types import Batch
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from llmclient.batch._types import BatchRequest, BatchResult
from llmclient.clients.openai import OpenAIClient
from llmclient.errors import LLMError, MalformedResponseError
from llmclient.fanout import iterate_concurrent
from llmclient.types import Completion

__all__ = ["answer_online", "completion_of", "ended_at", "row_error", "unrun"]

logger = logging.getLogger("llmclient")


def completion_of(
    client: OpenAIClient, body: object, elapsed: float
) -> tuple[Completion | None, Exception | None]:
    """A row's answer body as the client's `Completion` (its batch's time as the latency),
    or the error parsing it."""
    try:
        parsed = ChatCompletion.model_validate(body)
        completion = client._completion(parsed)
    except ValidationError as error:
        problem = f"could not parse the batch's answer: {error}"
        return None, MalformedResponseError(problem, provider="openai")
    except LLMError as error:
        return None, error
    return dataclasses.replace(completion, attempts=1, latency=elapsed), None


def row_error(client: OpenAIClient, response: dict[str, Any]) -> LLMError:
    """A row's error answer as the client classifies the same answer online."""
    status = response.get("status_code")
    status = status if isinstance(status, int) else 500
    body = response.get("body")
    detail = body.get("error") if isinstance(body, dict) else None
    message = str(detail.get("message")) if isinstance(detail, dict) else f"HTTP {status}"
    request = httpx2.Request("POST", client.settings.base_url + "/chat/completions")
    answer = httpx2.Response(status, json=body, request=request)
    sdk_error = openai.APIStatusError(message, response=answer, body=body)
    return client._classify(sdk_error) or LLMError(message, status_code=status)


async def answer_online(
    client: OpenAIClient, requests: Mapping[str, BatchRequest], keys: list[str]
) -> AsyncIterator[BatchResult]:
    """The rows a batch failed, asked again through the client."""
    logger.info("batch job: %d failed row(s) retried online", len(keys))

    async def answer(key: str) -> Completion:
        request = requests[key]
        return await client.generate(request.prompt, **dict(request.params))

    async for index, outcome in iterate_concurrent(
        answer, keys, max_concurrent=client.max_workers, return_exceptions=True
    ):
        request_id = requests[keys[index]].id
        if isinstance(outcome, Completion):
            yield BatchResult(request_id, completion=outcome)
        elif isinstance(outcome, LLMError) and outcome.fatal:
            raise outcome
        elif isinstance(outcome, Exception):
            yield BatchResult(request_id, error=outcome)
        else:
            raise outcome


def unrun(row: dict[str, Any] | None, status: str) -> tuple[str, str]:
    """The code and message of a row its batch did not run."""
    error = row.get("error") if row else None
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"]), str(error.get("message") or "not run")
    if status == "expired":
        return "batch_expired", "not run before the batch's completion window ended"
    if status == "cancelled":
        return "batch_cancelled", "not run: the batch was cancelled"
    return "batch_missing", "the batch's output holds no answer for it"


def ended_at(batch: Batch) -> int:
    for stamp in (batch.completed_at, batch.expired_at, batch.cancelled_at, batch.failed_at):
        if stamp is not None:
            return stamp
    return batch.created_at
