"""The simulator's `/v1/files` and `/v1/batches`, driven by the real openai SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from openai.types import Batch

from llmclient.testing import SimulatedServer

ENDPOINT = "/v1/chat/completions"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[SimulatedServer]:
    async with SimulatedServer() as simulated:
        simulated.batches.pace = 0.02
        yield simulated


@pytest_asyncio.fixture
async def sdk(server: SimulatedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=server.openai_base_url, max_retries=0)
    async with client:
        yield client


def row(custom_id: str, text: str = "hello there", **body: Any) -> dict[str, Any]:
    request = {"model": "sim-model", "messages": [{"role": "user", "content": text}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": request}


def jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


async def start(sdk: openai.AsyncOpenAI, rows: list[Any]) -> Batch:
    uploaded = await sdk.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch")
    return await sdk.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"
    )


async def until_ended(sdk: openai.AsyncOpenAI, batch_id: str) -> tuple[Batch, list[str]]:
    """The batch once it has ended, and every status it was seen in."""
    seen: list[str] = []
    async with asyncio.timeout(20):
        while True:
            batch = await sdk.batches.retrieve(batch_id)
            if not seen or seen[-1] != batch.status:
                seen.append(batch.status)
            if batch.status in ("completed", "failed", "expired", "cancelled"):
                return batch, seen
            await asyncio.sleep(0.005)


async def lines(sdk: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    content = await sdk.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines()]


async def test_files_upload_retrieve_list_content_delete(sdk: openai.AsyncOpenAI) -> None:
    content = jsonl([row("a")])
    uploaded = await sdk.files.create(file=("in.jsonl", content), purpose="batch")
    assert (uploaded.object, uploaded.purpose, uploaded.bytes) == ("file", "batch", len(content))
    assert uploaded.filename == "in.jsonl"
    assert (await sdk.files.retrieve(uploaded.id)).id == uploaded.id
    assert [f.id for f in (await sdk.files.list()).data] == [uploaded.id]
    assert (await sdk.files.content(uploaded.id)).content == content
    deleted = await sdk.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        await sdk.files.retrieve(uploaded.id)


async def test_upload_refuses_a_batch_file_that_is_not_jsonl(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        await sdk.files.create(file=("in.txt", b"{}\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        await sdk.files.create(file=("in.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]


async def test_a_batch_runs_through_its_statuses_and_answers_every_row(
    server: SimulatedServer, sdk: openai.AsyncOpenAI
) -> None:
    batch = await start(sdk, [row("a", "first question"), row("b", "second one", max_tokens=2)])
    assert (batch.status, batch.endpoint, batch.completion_window) == (
        "validating",
        ENDPOINT,
        "24h",
    )
    assert batch.expires_at == batch.created_at + 86400
    ended, seen = await until_ended(sdk, batch.id)
    assert seen[-1] == "completed" and "finalizing" in seen
    assert seen == [
        s for s in ("validating", "in_progress", "finalizing", "completed") if s in seen
    ]
    assert ended.request_counts is not None
    assert (ended.request_counts.total, ended.request_counts.completed) == (2, 2)
    assert ended.error_file_id is None and ended.completed_at is not None
    assert ended.model == "sim-model"
    answers = {line["custom_id"]: line for line in await lines(sdk, ended.output_file_id)}
    assert answers["a"]["response"]["status_code"] == 200
    assert answers["a"]["error"] is None
    body = answers["a"]["response"]["body"]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Simulated reply to: first question"
    assert answers["b"]["response"]["body"]["choices"][0]["finish_reason"] == "length"
    assert server.batches.batches_created == [batch.id]


async def test_a_bad_input_file_fails_validation_with_its_errors(sdk: openai.AsyncOpenAI) -> None:
    bad_url = {**row("c"), "url": "/v1/embeddings"}
    batch = await start(sdk, [row("a"), row("a"), "not json", bad_url])
    ended, seen = await until_ended(sdk, batch.id)
    assert seen[-1] == "failed" and "in_progress" not in seen
    assert ended.failed_at is not None and ended.output_file_id is None
    assert ended.errors is not None and ended.errors.data is not None
    found = {(e.code, e.line) for e in ended.errors.data}
    assert found == {
        ("duplicate_custom_id", 2),
        ("invalid_json_line", 3),
        ("mismatched_endpoint", 4),
    }


async def test_an_injected_failure_fails_the_next_batch(
    server: SimulatedServer, sdk: openai.AsyncOpenAI
) -> None:
    server.batches.inject_batch_failure("token_limit_exceeded", "Enqueued token limit reached.")
    failed, _ = await until_ended(sdk, (await start(sdk, [row("a")])).id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    assert failed.errors.data[0].code == "token_limit_exceeded"
    assert (await until_ended(sdk, (await start(sdk, [row("a")])).id))[0].status == "completed"


async def test_row_errors_go_to_the_error_file(
    server: SimulatedServer, sdk: openai.AsyncOpenAI
) -> None:
    server.batches.inject_row_error(1, status=500)
    no_model = row("c")
    del no_model["body"]["model"]
    ended, _ = await until_ended(sdk, (await start(sdk, [row("a"), row("b"), no_model])).id)
    assert ended.status == "completed"
    assert ended.request_counts is not None
    assert (ended.request_counts.completed, ended.request_counts.failed) == (1, 2)
    errors = {line["custom_id"]: line for line in await lines(sdk, ended.error_file_id)}
    assert errors["a"]["response"]["status_code"] == 500
    assert errors["c"]["response"]["status_code"] == 400
    assert "model is required" in errors["c"]["response"]["body"]["error"]["message"]
    assert [line["custom_id"] for line in await lines(sdk, ended.output_file_id)] == ["b"]


async def test_a_batch_past_its_window_expires_keeping_the_rows_done(
    server: SimulatedServer, sdk: openai.AsyncOpenAI
) -> None:
    server.batches.pace = 0.01
    server.batches.row_time = 0.05
    server.batches.window = 0.2
    ended, seen = await until_ended(sdk, (await start(sdk, [row(f"r{i}") for i in range(20)])).id)
    assert seen[-1] == "expired" and ended.expired_at is not None
    done = [line["custom_id"] for line in await lines(sdk, ended.output_file_id)]
    expired = await lines(sdk, ended.error_file_id)
    assert 0 < len(done) < 20
    assert len(done) + len(expired) == 20
    assert {line["error"]["code"] for line in expired} == {"batch_expired"}
    assert all(line["response"] is None for line in expired)


async def test_cancel_goes_through_cancelling_to_cancelled(
    server: SimulatedServer, sdk: openai.AsyncOpenAI
) -> None:
    server.batches.row_time = 0.05
    batch = await start(sdk, [row(f"r{i}") for i in range(50)])
    await asyncio.sleep(0.15)
    cancelling = await sdk.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    ended, seen = await until_ended(sdk, batch.id)
    assert seen == ["cancelling", "cancelled"]
    assert ended.cancelled_at is not None
    unrun = await lines(sdk, ended.error_file_id)
    assert unrun and {line["error"]["code"] for line in unrun} == {"batch_cancelled"}
    assert ended.request_counts is not None
    assert len(unrun) + ended.request_counts.completed == 50
    with pytest.raises(openai.BadRequestError, match="Cannot cancel"):
        await sdk.batches.cancel(batch.id)


async def test_create_refuses_bad_arguments(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="No such File"):
        await sdk.batches.create(
            input_file_id="file-nope", endpoint=ENDPOINT, completion_window="24h"
        )
    other = await sdk.files.create(file=("data.jsonl", b"{}\n"), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        await sdk.batches.create(input_file_id=other.id, endpoint=ENDPOINT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        await sdk.batches.retrieve("batch_nope")


async def test_list_pages_newest_first(sdk: openai.AsyncOpenAI) -> None:
    made = [(await start(sdk, [row("a")])).id for _ in range(3)]
    first = await sdk.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    every = [b.id async for b in sdk.batches.list(limit=2)]
    assert every == made[::-1]
