"""`llmclient run` end to end: resume after SIGKILL, torn lines, --retry-failed, bad input.

In-process, but for the runs killed with SIGKILL."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import pty
import re
import signal
import struct
import sys
import termios
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmclient import Completion, OllamaClient
from llmclient.cli import _jobfile as jobfile
from llmclient.cli import _online
from llmclient.testing import Fault, SimulatedServer
from tests.cli.helpers import (
    Result,
    assert_one_line_error,
    count_lines,
    read_records,
    run_cli,
    start_cli,
    write_jsonl,
)

Factory = Callable[..., Awaitable[SimulatedServer]]


def run_args(
    server: SimulatedServer, source: Path, output: Path, *extra: str, provider: str = "ollama"
) -> list[str]:
    return [
        "run",
        str(source),
        "-o",
        str(output),
        "--provider",
        provider,
        "--model",
        "sim-model",
        "--base-url",
        server.url if provider == "ollama" else server.openai_base_url,
        *extra,
    ]


def questions(count: int) -> list[dict[str, object]]:
    return [{"id": f"q{i}", "prompt": f"question {i}", "max_tokens": 4} for i in range(count)]


async def wait_for_records(path: Path, count: int) -> None:
    """Poll the output file (written by another process) until it holds `count` records."""
    for _ in range(4000):
        if count_lines(path) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"fewer than {count} records in {path} after 20 s")


async def test_answers_every_line_with_usage_attempts_and_latency(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.01)
    source = write_jsonl(tmp_path / "in.jsonl", questions(20))
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output))
    assert result.code == 0, result
    records = read_records(output)
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(20))
    first = next(r for r in records if r["id"] == "q3")
    assert first["answer"] == "Simulated reply to: question"  # max_tokens 4
    assert first["usage"]["completion_tokens"] == 4
    assert first["attempts"] == 1 and first["latency_s"] >= 0.01
    assert "done 20, failed 0, skipped 0" in result.out
    assert result.err == ""


async def test_killed_twice_then_rerun_holds_one_record_per_id(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.02)
    source = write_jsonl(tmp_path / "in.jsonl", questions(240))
    output = tmp_path / "out.jsonl"
    args = run_args(server, source, output)
    for kill_after in (30, 100):  # SIGKILL: a process of its own
        process = await start_cli(*args)
        await wait_for_records(output, kill_after)
        process.kill()
        await process.wait()
        assert process.returncode == -9
    written = len(read_records(output))
    assert 100 <= written < 240
    with output.open("ab") as torn:  # what a kill in the middle of a write would leave
        torn.write(b'{"id": "q9999", "answer": "half a rec')

    result = await run_cli(*args)

    assert result.code == 0, result
    assert "torn last record" in result.err
    assert f"skipped {written}" in result.out
    ids = [r["id"] for r in read_records(output)]
    assert len(ids) == len(set(ids)) == 240
    assert set(ids) == {f"q{i}" for i in range(240)}


async def test_retry_failed_replaces_error_records(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    faulty = await simulated_server_factory(latency=0.01, fault_rates={"500": 0.5}, seed=3)
    source = write_jsonl(tmp_path / "in.jsonl", questions(30))
    output = tmp_path / "out.jsonl"

    first = await run_cli(*run_args(faulty, source, output, "--retries", "1"))

    assert first.code == 1
    assert "--retry-failed" in first.err
    errors = [r for r in read_records(output) if "error" in r]
    assert errors
    assert errors[0]["error"]["kind"] == "server_error"
    assert errors[0]["error"]["status_code"] == 500
    assert errors[0]["attempts"] == 2

    healthy = await simulated_server_factory(latency=0.01)
    plain = await run_cli(*run_args(healthy, source, output, "--retries", "1"))
    assert plain.code == 1 and healthy.stats.requests == 0  # errors are kept, not resent

    retried = await run_cli(*run_args(healthy, source, output, "--retries", "1", "--retry-failed"))

    assert retried.code == 0, retried
    assert healthy.stats.requests == len(errors)
    records = read_records(output)
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(30))
    assert all("answer" in r for r in records)


async def test_verbose_logs_the_retries_on_stderr_of_that_run_only(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    faulty = await simulated_server_factory(latency=0.001, fault_rates={"500": 1.0})
    source = write_jsonl(tmp_path / "in.jsonl", questions(1))

    async def run(name: str, *extra: str) -> Result:
        return await run_cli(*run_args(faulty, source, tmp_path / name, "--retries", "1", *extra))

    handlers = logging.getLogger().handlers[:]
    loud, quiet, loud_again = (
        await run("1.jsonl", "-v"),
        await run("2.jsonl"),
        await run("3.jsonl", "-v"),
    )

    retried = "attempt 1 failed (server_error"
    assert retried in loud.err and retried in loud_again.err
    assert retried not in quiet.err
    assert [r.code for r in (loud, quiet, loud_again)] == [1, 1, 1]
    assert logging.getLogger().handlers == handlers  # the commands' handlers are gone


MIXED = [
    {"id": "a", "prompt": "fine"},
    "not json",
    [1, 2],
    {"id": "b", "prompt": 5},
    {"id": "c"},
    {"id": "d", "prompt": "x", "temperature": "hot"},
    {"prompt": "no id: the line number is the id"},
    {"id": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
]


async def test_malformed_lines_are_reported_and_skipped(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", MIXED)
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output))
    assert result.code == 0, result
    for line in (2, 3, 4, 5, 6):
        assert f"in.jsonl:{line}: skipped:" in result.err
    assert "malformed 5" in result.out
    records = {r["id"]: r for r in read_records(output)}
    assert set(records) == {"a", 7, "m"}
    assert records["m"]["usage"]["completion_tokens"] == 3


async def test_a_line_that_is_not_utf8_is_named_and_skipped(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"id": "a", "prompt": "fine"}\n'
        b'{"id": "latin1", "prompt": "caf\xe9"}\n'  # Latin-1, not UTF-8
        b'{"id": "b", "prompt": "caf\xc3\xa9"}\n'
    )
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output))
    assert result.code == 0, result
    assert result.err_lines == [
        f"llmclient: {source}:2: skipped: not valid UTF-8 (byte 0xe9 at column 32)"
    ]
    assert "done 2, failed 0, skipped 0 (already in the output), malformed 1" in result.out
    records = {r["id"]: r for r in read_records(output)}
    assert set(records) == {"a", "b"}
    assert records["b"]["answer"] == "Simulated reply to: café"
    assert server.stats.requests == 2

    strict = await run_cli(*run_args(server, source, tmp_path / "strict.jsonl", "--strict"))
    assert "the first at line 2: not valid UTF-8" in assert_one_line_error(strict, 2)


async def test_strict_refuses_malformed_lines_before_sending(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", MIXED)
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output, "--strict"))
    line = assert_one_line_error(result, 2)
    assert "5 malformed line(s), the first at line 2: not valid JSON" in line
    assert server.stats.requests == 0 and not output.exists()


async def test_duplicate_ids_fail_before_anything_is_sent(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    rows = [{"id": 1, "prompt": "a"}, {"id": "1", "prompt": "b"}, {"id": 1, "prompt": "c"}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output))
    line = assert_one_line_error(result, 2)
    assert "duplicate id 1 on lines 1 and 3" in line
    assert server.stats.requests == 0 and not output.exists()


async def test_output_line_not_written_by_run_is_refused(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(2))
    output = write_jsonl(tmp_path / "out.jsonl", [{"id": "q0", "answer": "x"}, "garbage"])
    result = await run_cli(*run_args(server, source, output))
    line = assert_one_line_error(result, 1)
    assert "out.jsonl:2" in line and "not a record" in line
    assert server.stats.requests == 0


# --- one bad item never ends the job --------------------------------------------------------

#: Faults answering 200 with a body that is not the API's answer; the simulator may add more.
MALFORMED_FAULTS = [
    fault.value
    for fault in Fault
    if fault.value in {"malformed", "html", "json_array", "missing_fields", "corrupt_gzip"}
]


def by_id(path: Path) -> dict[object, dict[str, Any]]:
    """The output's records by id, checking there is exactly one per id."""
    records = read_records(path)
    found = {r["id"]: r for r in records}
    assert len(found) == len(records), "an id has more than one record"
    return found


@pytest.mark.parametrize("provider", ["ollama", "openai"])
@pytest.mark.parametrize("fault", MALFORMED_FAULTS)
async def test_a_malformed_answer_is_that_ids_error_record_and_the_run_goes_on(
    tmp_path: Path, simulated_server_factory: Factory, fault: str, provider: str
) -> None:
    server = await simulated_server_factory(latency=0.001)
    server.inject(fault, 1)
    source = write_jsonl(tmp_path / "in.jsonl", questions(10))
    output = tmp_path / "out.jsonl"
    retries = ("--retries", "0", "--max-concurrent", "1")
    args = run_args(server, source, output, *retries, provider=provider)

    first = await run_cli(*args)

    assert first.code == 1, first
    assert "done 9, failed 1, skipped 0" in first.out
    records = by_id(output)
    assert set(records) == {f"q{i}" for i in range(10)}
    (failed,) = (r for r in records.values() if "error" in r)
    assert failed["error"]["kind"] == "malformed_response", failed  # the client's translation
    assert failed["usage"] is None and failed["attempts"] == 1
    assert first.err_lines == [
        "llmclient: error: 1 id(s) have an error record; rerun with --retry-failed to try them "
        "again"
    ]

    again = await run_cli(*args, "--retry-failed")

    assert again.code == 0, again
    assert "done 1, failed 0, skipped 9" in again.out
    records = by_id(output)
    assert set(records) == {f"q{i}" for i in range(10)}
    assert all("answer" in r for r in records.values())


async def test_malformed_answers_at_random_leave_one_record_per_id(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    faulty = await simulated_server_factory(
        latency=0.001, parallel=4, fault_rates={"malformed": 0.2}, seed=7
    )
    source = write_jsonl(tmp_path / "in.jsonl", questions(60))
    output = tmp_path / "out.jsonl"

    first = await run_cli(*run_args(faulty, source, output, "--retries", "0"))

    assert first.code == 1, first
    records = by_id(output)
    assert set(records) == {f"q{i}" for i in range(60)}
    errors = [r for r in records.values() if "error" in r]
    assert 0 < len(errors) < 60
    assert {r["error"]["kind"] for r in errors} == {"malformed_response"}
    assert f"done {60 - len(errors)}, failed {len(errors)}, skipped 0" in first.out
    assert "Traceback" not in first.err

    healthy = await simulated_server_factory(latency=0.001)
    retried = await run_cli(*run_args(healthy, source, output, "--retry-failed"))

    assert retried.code == 0, retried
    assert healthy.stats.requests == len(errors)
    records = by_id(output)
    assert set(records) == {f"q{i}" for i in range(60)}
    assert all("answer" in r for r in records.values())


async def test_an_unexpected_exception_is_that_ids_internal_error_logged_with_its_traceback(
    tmp_path: Path, simulated_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await simulated_server_factory(latency=0.001)
    chat = OllamaClient._chat

    async def breaks_on_q3(self: OllamaClient, request: Any) -> Completion:
        if "question 3" in str(request.messages):  # e.g. a JSON array the SDK cannot unpack
            raise TypeError("argument after ** must be a mapping, not list")
        return await chat(self, request)

    monkeypatch.setattr(OllamaClient, "_chat", breaks_on_q3)
    source = write_jsonl(tmp_path / "in.jsonl", questions(8))
    output = tmp_path / "out.jsonl"

    result = await run_cli(*run_args(server, source, output))

    assert result.code == 1, result
    assert "done 7, failed 1, skipped 0" in result.out
    records = by_id(output)
    assert set(records) == {f"q{i}" for i in range(8)}
    assert records["q3"]["error"] == {
        "kind": "internal_error",
        "message": "TypeError: argument after ** must be a mapping, not list",
        "status_code": None,
    }
    assert records["q3"]["attempts"] is None
    logged = [line for line in result.err_lines if " ERROR llmclient: " in line]
    assert len(logged) == 1 and '"q3" (line 4): unexpected TypeError' in logged[0]
    assert "Traceback" in result.err and "breaks_on_q3" in result.err
    assert result.err_lines[-1].startswith("llmclient: error: 1 id(s) have an error record")

    monkeypatch.setattr(OllamaClient, "_chat", chat)
    retried = await run_cli(*run_args(server, source, output, "--retry-failed"))
    assert retried.code == 0, retried
    assert all("answer" in r for r in by_id(output).values())


async def test_an_unexpected_exception_keeps_the_api_key_out_of_the_record_and_the_log(
    tmp_path: Path, simulated_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await simulated_server_factory(latency=0.001)
    key = "sk-secret-key-1234567890"

    async def echoes_the_key(self: OllamaClient, request: Any) -> Completion:
        raise RuntimeError(f"refused the headers {{'authorization': 'Bearer {key}'}}")

    monkeypatch.setattr(OllamaClient, "_chat", echoes_the_key)
    source = write_jsonl(tmp_path / "in.jsonl", questions(1))
    output = tmp_path / "out.jsonl"

    result = await run_cli(*run_args(server, source, output), env={"OLLAMA_API_KEY": key})

    assert result.code == 1, result
    (record,) = read_records(output)
    assert record["error"]["message"] == (
        "RuntimeError: refused the headers {'authorization': 'Bearer ***'}"
    )
    assert "Bearer ***" in result.err and "echoes_the_key" in result.err
    assert key not in result.err and key not in output.read_text()


async def test_an_answer_json_cannot_hold_is_that_ids_internal_error(
    tmp_path: Path, simulated_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await simulated_server_factory(latency=0.001)
    answer_record = _online._answer_record

    def unwritable_q1(*args: Any) -> dict[str, Any]:
        record = answer_record(*args)
        if record["id"] == "q1":
            record["latency_s"] = float("nan")  # not JSON
        return record

    monkeypatch.setattr(_online, "_answer_record", unwritable_q1)
    source = write_jsonl(tmp_path / "in.jsonl", questions(4))
    output = tmp_path / "out.jsonl"

    result = await run_cli(*run_args(server, source, output))

    assert result.code == 1, result
    assert "done 3, failed 1, skipped 0" in result.out
    records = by_id(output)
    assert set(records) == {f"q{i}" for i in range(4)}
    assert records["q1"]["error"]["kind"] == "internal_error"
    assert records["q1"]["error"]["message"].startswith("ValueError: ")


@pytest.mark.parametrize("fault", ["401", "insufficient_quota"])
async def test_an_error_every_item_would_hit_stops_the_job_with_one_line(
    tmp_path: Path, simulated_server_factory: Factory, fault: str
) -> None:
    server = await simulated_server_factory(latency=0.001, fault_rates={fault: 1.0})
    source = write_jsonl(tmp_path / "in.jsonl", questions(10))
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output))
    line = assert_one_line_error(result, 1)
    assert ("API key" in line) if fault == "401" else ("quota" in line)
    assert read_records(output) == []


async def test_an_interrupt_still_stops_the_job(
    tmp_path: Path, simulated_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await simulated_server_factory(latency=0.001)

    async def interrupted(self: OllamaClient, request: Any) -> Completion:
        raise KeyboardInterrupt

    monkeypatch.setattr(OllamaClient, "_chat", interrupted)
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    output = tmp_path / "out.jsonl"
    result = await run_cli(*run_args(server, source, output))
    assert result.code == 130, result
    assert result.err_lines == ["llmclient: interrupted"]
    assert read_records(output) == []


INTERRUPTIBLE = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'llmclient'; runpy.run_module('llmclient', run_name='__main__')"
)


async def test_ctrl_c_stops_the_job_cleanly_and_the_rerun_finishes_it(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    # one slot (Ollama's default) at 50 ms: the job would take 10 s, so a test process
    # starved of the CPU for seconds (a loaded CI machine) still interrupts it
    server = await simulated_server_factory(parallel=4, latency=0.05)
    source = write_jsonl(tmp_path / "in.jsonl", questions(200))
    output = tmp_path / "out.jsonl"
    args = run_args(server, source, output)
    # SIGINT: a process of its own, with Python's own SIGINT handler even when this test
    # runs where SIGINT is ignored (a background job), which its children would inherit
    process = await start_cli(*args, program=[sys.executable, "-c", INTERRUPTIBLE])
    await wait_for_records(output, 20)
    process.send_signal(signal.SIGINT)
    _, err = await process.communicate()

    assert process.returncode == 130, err
    assert err.decode().splitlines() == ["llmclient: interrupted"]
    saved = by_id(output)
    assert 20 <= len(saved) < 200 and all("answer" in r for r in saved.values())

    server.latency = 0.005  # the rerun need not take long
    result = await run_cli(*args)

    assert result.code == 0, result
    assert f"skipped {len(saved)}" in result.out
    assert set(by_id(output)) == {f"q{i}" for i in range(200)}


# --- paths that cannot be read or written: one line, before anything is sent ---------------


def refuse_writes_to(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make opening `path` for writing fail as it does for a user without the permission (root
    ignores file modes)."""
    real_open = os.open

    def guarded(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(name) == path and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


@pytest.mark.parametrize(
    ("output_name", "expected"),
    [
        ("missing/dir/out.jsonl", "No such file or directory — create the directory"),
        ("a_dir", "Is a directory — give the path of a file"),
        ("a_file/out.jsonl", "Not a directory — a part of the path is a file"),
        ("read_only.jsonl", "Permission denied — make it writable, or choose another output path"),
    ],
)
async def test_an_output_that_cannot_be_written_is_one_line_before_anything_is_sent(
    tmp_path: Path,
    simulated_server_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    output_name: str,
    expected: str,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("")
    read_only = write_jsonl(tmp_path / "read_only.jsonl", [{"id": "q0", "error": {}}])
    read_only.chmod(0o444)
    if os.geteuid() == 0:
        refuse_writes_to(read_only, monkeypatch)
    output = tmp_path / output_name

    result = await run_cli(*run_args(server, source, output, "--retry-failed"))

    line = assert_one_line_error(result, 2)
    assert line.startswith(f"llmclient: error: cannot write {output}: {expected}"), line
    assert server.stats.requests == 0
    assert not (tmp_path / "missing").exists()
    assert read_only.read_text() == '{"id": "q0", "error": {}}\n'  # not rewritten either


async def test_an_input_that_is_a_directory_is_one_line(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    (tmp_path / "in").mkdir()
    result = await run_cli(*run_args(server, tmp_path / "in", tmp_path / "out.jsonl"))
    line = assert_one_line_error(result, 2)
    assert line == f"llmclient: error: cannot read {tmp_path / 'in'}: Is a directory"
    assert server.stats.requests == 0


async def test_a_missing_input_is_one_line(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    result = await run_cli(*run_args(server, tmp_path / "nope.jsonl", tmp_path / "out.jsonl"))
    line = assert_one_line_error(result, 2)
    assert line.endswith("nope.jsonl: No such file or directory")


async def test_a_symlink_loop_as_input_or_output_is_one_line(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)

    as_output = await run_cli(*run_args(server, source, loop))
    as_input = await run_cli(*run_args(server, loop, tmp_path / "out.jsonl"))

    line = assert_one_line_error(as_output, 2)
    assert line.startswith(f"llmclient: error: cannot write {loop}: Too many levels of symbolic")
    line = assert_one_line_error(as_input, 2)
    assert line == f"llmclient: error: cannot read {loop}: Too many levels of symbolic links"
    assert server.stats.requests == 0


async def test_an_output_path_ending_in_a_slash_is_refused_not_written_as_a_file(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    args = run_args(server, source, tmp_path / "results")
    args[args.index("-o") + 1] += "/"  # meant as a directory
    line = assert_one_line_error(await run_cli(*args), 2)
    assert line.endswith(
        f"names a directory; give the path of a file, e.g. {tmp_path}/results/output.jsonl "
        "(see --help)"
    )
    assert not (tmp_path / "results").exists()
    assert server.stats.requests == 0


async def test_a_device_as_input_is_one_line_and_as_output_is_not_read(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    endless = Path("/dev/zero")  # reading it never ends

    as_input = await run_cli(*run_args(server, endless, tmp_path / "out.jsonl"))
    as_output = await run_cli(*run_args(server, source, endless))

    line = assert_one_line_error(as_input, 2)
    assert line.startswith("llmclient: error: cannot read /dev/zero: not a regular file — ")
    assert as_output.code == 0, as_output
    assert "done 3, failed 0" in as_output.out


# --- the output fails while the job runs -----------------------------------------------------


async def test_a_full_disk_stops_the_job_saying_what_was_saved_and_the_rerun_finishes_it(
    tmp_path: Path, simulated_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(20))
    output = tmp_path / "out.jsonl"
    real_write = os.write
    records = 0

    def fills_up(fd: int, data: Any) -> int:
        nonlocal records
        if bytes(data).startswith(b'{"id": '):
            records += 1
            if records > 5:
                return real_write(fd, bytes(data)[:7])  # a short write, then no room at all
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fills_up)
    args = run_args(server, source, output, "--max-concurrent", "1")
    full = await run_cli(*args)
    monkeypatch.setattr(os, "write", real_write)

    assert full.code == 1, full
    assert "Traceback" not in full.err
    assert full.err_lines[0] == (
        f"llmclient: stopped after 5 answered and 0 failed, saved in {output}; rerun the same "
        "command to continue"
    )
    assert full.err_lines[1].startswith(f"llmclient: error: {output}: could not write a whole")
    assert len(full.err_lines) == 2

    result = await run_cli(*args)

    assert result.code == 0, result
    assert "torn last record" in result.err and "skipped 5" in result.out
    assert set(by_id(output)) == {f"q{i}" for i in range(20)}


async def test_a_failing_flush_is_one_line(
    tmp_path: Path, simulated_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    output = tmp_path / "out.jsonl"

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    result = await run_cli(*run_args(server, source, output))
    line = assert_one_line_error(result, 1)
    assert "could not flush the records to disk (Input/output error)" in line


async def test_an_input_that_cannot_be_read_any_more_stops_the_job_with_one_line(
    tmp_path: Path, simulated_server_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    output = tmp_path / "out.jsonl"

    def unplugged(path: Path, todo: set[str]) -> Iterator[object]:
        raise OSError(errno.EIO, "Input/output error")
        yield  # a generator, as the real one

    monkeypatch.setattr(jobfile, "items", unplugged)
    result = await run_cli(*run_args(server, source, output))
    line = assert_one_line_error(result, 1)
    assert line == (
        f"llmclient: error: {source}: could not read it any more (Input/output error) — put it "
        "back, then rerun the same command to continue"
    )


async def test_dev_null_as_output_runs_the_job(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001)
    source = write_jsonl(tmp_path / "in.jsonl", questions(3))
    result = await run_cli(*run_args(server, source, Path(os.devnull)))
    assert result.code == 0, result
    assert "done 3, failed 0" in result.out


async def test_lines_added_to_the_input_during_the_run_wait_for_the_next_run(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.005)
    source = write_jsonl(tmp_path / "in.jsonl", questions(400))  # more than one read buffer
    output = tmp_path / "out.jsonl"
    job = asyncio.create_task(run_cli(*run_args(server, source, output)))
    await wait_for_records(output, 10)
    with source.open("a") as more:  # an id again, and a new one
        more.write('{"id": "q399", "prompt": "again"}\n{"id": "new", "prompt": "late"}\n')

    result = await job

    assert result.code == 0, result
    assert "done 400, failed 0" in result.out
    records = by_id(output)
    assert set(records) == {f"q{i}" for i in range(400)}
    assert records["q399"]["answer"] == "Simulated reply to: question"


def read_terminal(master: int) -> str:
    """Everything written to a pseudo-terminal until its last writer closes it."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


async def test_the_progress_bar_keeps_moving_on_a_terminal(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    # 4 slow answers first (as while a model loads), then 396 short ones, 4 at a time: at least
    # 1.5 s, over which a bar refreshed every 0.1 s shows well over 10 counts on the way.
    server = await simulated_server_factory(parallel=4, latency=0.01, token_latency=0.005)
    slow = [{"id": f"s{i}", "prompt": " ".join(["w"] * 40), "max_tokens": 40} for i in range(4)]
    fast = [{"id": f"q{i}", "prompt": f"q{i}", "max_tokens": 1} for i in range(396)]
    source = write_jsonl(tmp_path / "in.jsonl", slow + fast)
    output = tmp_path / "out.jsonl"
    master, terminal = pty.openpty()  # stderr is a terminal: the bar is drawn
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    args = run_args(server, source, output, "--max-concurrent", "4")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmclient", *args, stdout=asyncio.subprocess.PIPE, stderr=terminal
    )
    os.close(terminal)
    screen, (out, _) = await asyncio.gather(
        asyncio.to_thread(read_terminal, master), process.communicate()
    )

    assert process.returncode == 0, screen
    assert "done 400, failed 0" in out.decode()
    shown = {int(n) for n in re.findall(r"\b(\d+)/400\b", screen)}
    assert len(shown - {0, 400}) >= 10, screen


async def test_a_job_rerun_with_cache_sends_no_request(
    tmp_path: Path, simulated_server_factory: Factory
) -> None:
    server = await simulated_server_factory(latency=0.001, parallel=4)
    source = write_jsonl(tmp_path / "in.jsonl", questions(30))
    cache = tmp_path / "cache.sqlite"
    first = await run_cli(*run_args(server, source, tmp_path / "a.jsonl", "--cache", str(cache)))
    assert first.code == 0, first
    assert "cache hits 0, misses 30" in first.out
    again = await run_cli(*run_args(server, source, tmp_path / "b.jsonl", "--cache", str(cache)))
    assert again.code == 0, again
    assert server.stats.by_path["/api/chat"] == 30
    assert "cache hits 30, misses 0" in again.out
    answers = {r["id"]: r["answer"] for r in read_records(tmp_path / "a.jsonl")}
    replayed = read_records(tmp_path / "b.jsonl")
    assert {r["id"]: r["answer"] for r in replayed} == answers
    assert {r["attempts"] for r in replayed} == {0}
