"""`llmclient.batch`: a job through OpenAI's Batch API on the simulator, with the real SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import pytest_asyncio

from llmclient import (
    BatchFailedError,
    BatchJob,
    BatchRequest,
    BatchResult,
    BatchRowError,
    ConcurrencyProfile,
    ConfigurationError,
    ErrorKind,
    InvalidRequestError,
    OllamaClient,
    OpenAIClient,
    ServerError,
    submit_batch_job,
)
from llmclient.testing import SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]
FAST = {"poll_interval": 0.01, "max_poll_interval": 0.05}


@pytest_asyncio.fixture
async def server(simulated_server_factory: Factory) -> SimulatedServer:
    simulated = await simulated_server_factory(latency=0.001)
    simulated.batches.pace = 0.01
    return simulated


@pytest_asyncio.fixture
async def client(server: SimulatedServer) -> AsyncIterator[OpenAIClient]:
    profile = ConcurrencyProfile(name="test", retry=FAST_RETRY)
    async with OpenAIClient("sim-model", base_url=server.openai_base_url, profile=profile) as made:
        yield made


def requests(count: int, **params: Any) -> list[BatchRequest]:
    return [BatchRequest(f"q{i}", f"question {i}", params) for i in range(count)]


def by_id(results: list[BatchResult]) -> dict[str | int, BatchResult]:
    found = {r.id: r for r in results}
    assert len(found) == len(results), "one result per id"
    return found


def uploads(server: SimulatedServer) -> list[str]:
    return [f for f, stored in server.batches.files.items() if stored.info["purpose"] == "batch"]


async def test_a_job_answers_every_request_as_the_client_would_online(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    asked = [*requests(5, max_tokens=3), BatchRequest(7, [{"role": "user", "content": "hi"}])]
    job = await submit_batch_job(client, asked, **FAST)
    assert len(job.batch_ids) == 1 and server.stats.by_path["/v1/chat/completions"] == 0
    results = by_id(await job.wait())
    assert set(results) == {"q0", "q1", "q2", "q3", "q4", 7}
    for request in asked:
        online = await client.generate(request.prompt, **request.params)
        batched = results[request.id].completion
        assert batched is not None and results[request.id].batch_id == job.batch_ids[0]
        assert (batched.text, batched.usage, batched.finish_reason) == (
            online.text,
            online.usage,
            online.finish_reason,
        )
    sent = json.loads(server.batches.files[job.file_ids[0]].content.splitlines()[0])
    assert sent["custom_id"] == '"q0"' and sent["url"] == "/v1/chat/completions"
    assert sent["body"] == {
        "model": "sim-model",
        "messages": [{"role": "user", "content": "question 0"}],
        "max_tokens": 3,
    }


async def test_files_are_split_by_requests_and_by_bytes(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    job = await submit_batch_job(client, requests(7), max_requests=3, **FAST)
    assert len(job.batch_ids) == 3
    sizes = [len(server.batches.files[f].content.splitlines()) for f in job.file_ids]
    assert sizes == [3, 3, 1]
    assert len(by_id(await job.wait())) == 7
    line = len(server.batches.files[job.file_ids[0]].content.splitlines()[0]) + 1
    by_bytes = await submit_batch_job(client, requests(4), max_bytes=2 * line + 5, **FAST)
    assert len(by_bytes.batch_ids) == 2
    assert len(by_id(await by_bytes.wait())) == 4


async def test_expired_rows_are_kept_and_the_rest_resubmitted(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    server.batches.row_time = 0.03
    server.batches.window = 0.15
    job = await submit_batch_job(client, requests(12), max_rounds=20, **FAST)
    results = by_id(await job.wait())
    assert all(r.completion is not None for r in results.values())
    assert len(job.batch_ids) > 1  # the first batch expired before all 12 rows ran
    assert server.batches.status(job.batch_ids[0]) == "expired"
    kept = {r.id for r in results.values() if r.batch_id == job.batch_ids[0]}
    assert kept  # the rows the expired batch answered are its results, never sent again
    resent = {
        json.loads(line)["custom_id"]
        for f in job.file_ids[1:]
        for line in server.batches.files[f].content.splitlines()
    }
    assert resent and not resent & {json.dumps(key) for key in kept}
    assert sum(len(server.batches.files[f].content.splitlines()) for f in job.file_ids) > 12


async def test_rows_still_expired_after_the_last_round_are_errors(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    server.batches.row_time = 0.05
    server.batches.window = 0.08
    results = by_id(
        await (await submit_batch_job(client, requests(8), max_rounds=1, **FAST)).wait()
    )
    errors = [r.error for r in results.values() if r.error is not None]
    assert errors and all(isinstance(e, BatchRowError) for e in errors)
    assert {e.code for e in errors if isinstance(e, BatchRowError)} == {"batch_expired"}
    assert {e.kind for e in errors} == {ErrorKind.TIMEOUT}
    assert any(r.completion is not None for r in results.values())


async def test_cancelled_rows_are_reported_or_resubmitted(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    server.batches.row_time = 0.05
    job = await submit_batch_job(client, requests(20), **FAST)
    await job.cancel()
    results = by_id(await job.wait())
    cancelled = [r for r in results.values() if isinstance(r.error, BatchRowError)]
    assert cancelled and all(r.error.code == "batch_cancelled" for r in cancelled)  # type: ignore[union-attr]
    assert {r.error.kind for r in cancelled if r.error} == {ErrorKind.CANCELLED}
    server.batches.row_time = 0.0
    again = await submit_batch_job(client, requests(5), on_cancel="resubmit", **FAST)
    await again.cancel()
    assert all(r.completion is not None for r in await again.wait())
    assert len(again.batch_ids) == 2


async def test_transient_errors_of_uploads_creates_and_polls_are_retried(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    server.inject("500", path="/v1/files")
    server.inject("503", path="/v1/batches/")
    server.inject("500", path="/v1/files/")
    job = await submit_batch_job(client, requests(3), **FAST)
    assert len(by_id(await job.wait())) == 3
    assert server.stats.statuses[500] == 2 and server.stats.statuses[503] == 1
    assert len(server.batches.batches_created) == 1 and len(uploads(server)) == 1


async def test_a_create_that_reached_the_server_is_not_made_twice(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    """A create whose answer is lost: the job finds the batch instead of making another."""
    server.batches.lose_create_answers(1)
    job = await submit_batch_job(client, requests(2), **FAST)
    assert len(server.batches.batches_created) == 1
    assert job.batch_ids == server.batches.batches_created
    assert len(by_id(await job.wait())) == 2


async def test_a_create_refused_by_a_dropped_connection_is_tried_again(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    server.inject("drop", path="/v1/batches")
    job = await submit_batch_job(client, requests(2), **FAST)
    assert len(by_id(await job.wait())) == 2
    assert len(server.batches.batches_created) == 1


async def test_a_failed_batch_raises_its_errors(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    server.batches.inject_batch_failure("token_limit_exceeded", "Enqueued token limit reached.")
    job = await submit_batch_job(client, requests(3), **FAST)
    with pytest.raises(BatchFailedError) as caught:
        await job.wait()
    assert caught.value.batch_id == job.batch_ids[0]
    assert caught.value.errors[0]["code"] == "token_limit_exceeded"
    assert "token_limit_exceeded: Enqueued token limit reached" in str(caught.value)


@pytest.mark.parametrize("retry", ["online", "batch", "none"])
async def test_failed_rows_are_retried_as_asked(
    server: SimulatedServer, client: OpenAIClient, retry: str
) -> None:
    server.batches.inject_row_error(2, status=500)
    server.batches.inject_row_error(1, status=400, message="bad row")
    job = await submit_batch_job(client, requests(6), retry=retry, **FAST)  # type: ignore[arg-type]
    results = by_id(await job.wait())
    assert isinstance(results["q2"].error, InvalidRequestError)  # never retried: it cannot help
    retried = [results["q0"], results["q1"]]
    online = server.stats.by_path["/v1/chat/completions"]
    if retry == "online":
        assert all(r.completion is not None and r.batch_id is None for r in retried)
        assert (online, len(job.batch_ids)) == (2, 1)
    elif retry == "batch":
        assert all(r.completion is not None and r.batch_id == job.batch_ids[1] for r in retried)
        assert (online, len(job.batch_ids)) == (0, 2)
    else:
        assert all(isinstance(r.error, ServerError) for r in retried)
        assert (online, len(job.batch_ids)) == (0, 1)
    assert all(results[f"q{i}"].completion is not None for i in (3, 4, 5))


async def test_a_job_started_again_with_its_state_pays_nothing_twice(
    server: SimulatedServer, client: OpenAIClient, tmp_path: Path
) -> None:
    state = tmp_path / "job.batch.json"
    first = await submit_batch_job(client, requests(6), state=state, max_requests=4, **FAST)
    recorded = json.loads(state.read_text())
    assert [c["batch_id"] for c in recorded["chunks"]] == first.batch_ids
    again = await submit_batch_job(client, requests(6), state=state, max_requests=4, **FAST)
    assert again.batch_ids == first.batch_ids
    assert len(server.batches.batches_created) == 2 and len(uploads(server)) == 2
    assert len(by_id(await again.wait())) == 6


async def test_a_file_uploaded_but_not_batched_gets_its_one_batch(
    server: SimulatedServer, client: OpenAIClient, tmp_path: Path
) -> None:
    """A run killed after an upload (state saved) or after the batch's creation (not saved)."""
    sdk = openai.AsyncOpenAI(api_key="sk-test", base_url=server.openai_base_url)
    job = BatchJob(client, **FAST)
    content = b"".join(job._line(f'"q{i}"', r) for i, r in enumerate(requests(2)))
    state = {"version": 1, "endpoint": client.settings.base_url, "chunks": []}
    for made in (False, True):
        uploaded = await sdk.files.create(file=("in.jsonl", content), purpose="batch")
        if made:
            await sdk.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        state["chunks"] = [{"file_id": uploaded.id, "ids": ['"q0"', '"q1"'], "round": 0}]
        path = tmp_path / f"state-{made}.json"
        path.write_text(json.dumps(state))
        before = len(server.batches.batches_created)
        resumed = await submit_batch_job(client, requests(2), state=path, **FAST)
        assert len(server.batches.batches_created) == before + (0 if made else 1)
        assert resumed.batch_ids == [server.batches.batches_created[-1]]
        assert len(by_id(await resumed.wait())) == 2
    await sdk.close()


async def test_bad_requests_are_refused_before_any_upload(
    server: SimulatedServer, client: OpenAIClient
) -> None:
    with pytest.raises(ConfigurationError, match=r'id "q1": invalid parameter.*temperature'):
        await submit_batch_job(
            client, [BatchRequest("q0", "fine"), BatchRequest("q1", "x", {"temperature": -1})]
        )
    with pytest.raises(ConfigurationError, match='id "a" appears twice'):
        await submit_batch_job(client, [BatchRequest("a", "x"), BatchRequest("a", "y")])
    with pytest.raises(ConfigurationError, match="id must be a string or an integer"):
        await submit_batch_job(client, [BatchRequest(True, "x")])
    assert server.stats.by_path["/v1/files"] == 0


async def test_a_state_that_cannot_be_written_is_refused_before_any_upload(
    server: SimulatedServer, client: OpenAIClient, tmp_path: Path
) -> None:
    state = tmp_path / "missing" / "job.batch.json"
    with pytest.raises(ConfigurationError, match=r"state=.*job\.batch\.json.*cannot write it"):
        await submit_batch_job(client, requests(2), state=state)
    assert server.stats.by_path["/v1/files"] == 0


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"retry": "later"}, "retry='later'"),
        ({"on_cancel": "ignore"}, "on_cancel='ignore'"),
        ({"max_rounds": 0}, "max_rounds=0"),
        ({"poll_interval": -1}, "poll_interval=-1"),
        ({"max_requests": 50_001}, "max_requests=50001"),
    ],
)
async def test_bad_options_name_themselves(
    client: OpenAIClient, option: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        BatchJob(client, **option)


async def test_only_an_openai_client_can_batch(server: SimulatedServer) -> None:
    async with OllamaClient("sim-model", base_url=server.url) as ollama:
        with pytest.raises(ConfigurationError, match="the Batch API is OpenAI's"):
            BatchJob(ollama)  # type: ignore[arg-type]


async def test_a_state_file_of_another_server_is_refused(
    client: OpenAIClient, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "endpoint": "https://elsewhere/v1", "chunks": []}))
    with pytest.raises(ConfigurationError, match="holds batches of https://elsewhere/v1"):
        BatchJob(client, state=path)
    path.write_text("garbage")
    with pytest.raises(ConfigurationError, match="not a batch job state file"):
        BatchJob(client, state=path)
