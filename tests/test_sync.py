"""The sync clients (`llmclient.sync`) and `run_concurrent_sync`, from plain code and from
inside a running event loop (what a notebook cell is), against the simulated server through
the real SDKs. The server runs in its own thread: a blocking call inside a test's loop would
otherwise stop the server it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from llmclient import (
    AuthenticationError,
    AzureOpenAIClient,
    BaseLLMClient,
    ConcurrencyProfile,
    ConfigurationError,
    OllamaClient,
    OpenAIClient,
    ServerError,
    SyncAzureOpenAIClient,
    SyncClient,
    SyncOllamaClient,
    SyncOpenAIClient,
    Tool,
    run_concurrent_sync,
)
from llmclient._runner import LoopThread, run_in_new_loop
from llmclient.testing import SimulatedServer
from tests.conftest import FAST_RETRY, server_in_thread

PROVIDERS = ["ollama", "openai"]


@pytest.fixture
def server() -> Iterator[SimulatedServer]:
    with server_in_thread(parallel=8, latency=0.02) as simulated:
        yield simulated


def make_sync(provider: str, server: SimulatedServer, **options: Any) -> SyncClient[Any]:
    options.setdefault("max_concurrent", 2)
    if provider == "ollama":
        return SyncOllamaClient("sim-model", host=server.url, embed_model="sim-embed", **options)
    return SyncOpenAIClient(
        "sim-model", base_url=server.openai_base_url, embed_model="sim-embed", **options
    )


def make_async(provider: str, server: SimulatedServer, **options: Any) -> Any:
    options.setdefault("max_concurrent", 2)
    if provider == "ollama":
        return OllamaClient("sim-model", host=server.url, **options)
    return OpenAIClient("sim-model", base_url=server.openai_base_url, **options)


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("llmclient-") and t.is_alive()]


# --- plain code ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_sync_client_from_plain_code(provider: str, server: SimulatedServer) -> None:
    with make_sync(provider, server) as client:
        assert client.generate_answer("hello there") == "Simulated reply to: hello there"
        completion = client.generate("two words", max_tokens=1)
        assert completion.text == "Simulated" and completion.attempts == 1
        vectors = client.embed(["a", "b", "c"])
        assert len(vectors) == 3 and all(len(v) == 8 for v in vectors)
        with client.stream("stream me please") as deltas:
            text = "".join(deltas)
        assert text == "Simulated reply to: stream me please"
        assert deltas.finish_reason == "stop"
        stats = client.stats
        assert stats.completed == 4 and stats.failed == 0  # the three texts: one request
        assert stats.in_flight == 0
        assert client.model == "sim-model" and client.max_workers == 2
        assert client.async_client.provider == provider


def test_generic_wrapper_takes_any_client(server: SimulatedServer) -> None:
    with SyncClient(make_async("openai", server)) as client:
        assert client.generate_answer("hi") == "Simulated reply to: hi"
        assert isinstance(client.async_client, OpenAIClient)
    with pytest.raises(TypeError, match="must be an llmclient client"):
        SyncClient("not a client")  # type: ignore[type-var]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_one_sync_client_from_many_threads_keeps_its_limit(
    provider: str, server: SimulatedServer
) -> None:
    with make_sync(provider, server, max_concurrent=3) as client:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(client.generate_answer, [f"q{i}" for i in range(24)]))
        assert answers == [f"Simulated reply to: q{i}" for i in range(24)]
        assert client.stats.completed == 24
    assert server.stats.peak_in_flight == 3  # reached, never exceeded


# --- inside a running event loop (a notebook cell) ----------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sync_client_inside_a_running_loop(provider: str, server: SimulatedServer) -> None:
    asyncio.get_running_loop()  # this test's own loop runs, as a notebook's does
    with make_sync(provider, server) as client:
        assert client.generate_answer("from a cell") == "Simulated reply to: from a cell"
        assert "".join(client.stream("streamed in a cell")) == (
            "Simulated reply to: streamed in a cell"
        )
        assert len(client.embed("one")) == 1


async def test_run_concurrent_sync_inside_a_running_loop(server: SimulatedServer) -> None:
    llm = make_async("ollama", server, max_concurrent=3)
    prompts = [f"p{i}" for i in range(12)]
    answers = run_concurrent_sync(llm.generate_answer, prompts, progress_bar=False)
    assert answers == [f"Simulated reply to: {p}" for p in prompts]
    assert server.stats.peak_in_flight == 3
    # the same client still works in this loop afterwards, and its borrowed loop is gone
    assert await llm.generate_answer("after") == "Simulated reply to: after"
    await llm.aclose()
    assert not any(t.name == "llmclient-run_concurrent_sync" for t in loop_threads())


async def test_run_concurrent_sync_inside_a_loop_keeps_its_failure_modes() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        if x == 3:
            raise ValueError("three")
        return 2 * x

    with pytest.raises(ValueError, match="three"):
        run_concurrent_sync(double, range(6), progress_bar=False)
    got = run_concurrent_sync(double, range(6), progress_bar=False, failed_as_none=True)
    assert got == [0, 2, 4, None, 8, 10]
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        run_concurrent_sync(double, range(6), nope=1)  # type: ignore[call-overload]


# --- one limit for sync and async clients of one server -----------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_sync_and_an_async_client_share_the_limit(provider: str, server: SimulatedServer) -> None:
    sync_client = make_sync(provider, server)
    async_client = make_async(provider, server)

    async def async_side() -> list[str]:
        calls = (async_client.generate_answer(f"a{i}") for i in range(12))
        return list(await asyncio.gather(*calls))

    with sync_client, ThreadPoolExecutor(7) as pool:
        async_answers = pool.submit(asyncio.run, async_side())
        sync_answers = list(pool.map(sync_client.generate_answer, [f"s{i}" for i in range(12)]))
        assert async_answers.result(60) == [f"Simulated reply to: a{i}" for i in range(12)]
    assert sync_answers == [f"Simulated reply to: s{i}" for i in range(12)]
    assert server.stats.completed == 24
    assert server.stats.peak_in_flight == 2  # max_concurrent, for both clients together


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_errors_are_the_async_clients_errors(provider: str, server: SimulatedServer) -> None:
    profile = ConcurrencyProfile(name="test", retry=FAST_RETRY)
    with make_sync(provider, server, profile=profile) as client:
        server.inject("401")
        with pytest.raises(AuthenticationError):
            client.generate_answer("who am I")
        server.inject("500", count=4)
        with pytest.raises(ServerError):
            client.generate_answer("fails every attempt")
        requests = server.stats.requests
        with pytest.raises(ConfigurationError, match="temperature"):
            client.generate_answer("x", temperature="warm")  # type: ignore[typeddict-item]
        with pytest.raises(ConfigurationError, match="temperature"):
            client.stream("x", temperature="warm")  # type: ignore[typeddict-item]
        assert server.stats.requests == requests  # refused before anything was sent
        server.inject("401")
        with pytest.raises(AuthenticationError), client.stream("no key") as deltas:
            list(deltas)
        assert client.generate_answer("fine again") == "Simulated reply to: fine again"
        assert client.stats.in_flight == 0


def test_keyboard_interrupt_in_a_call_reaches_the_caller_and_the_loop_survives() -> None:
    runner = LoopThread("llmclient-test")

    async def interrupted() -> None:
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    async def fine() -> int:
        return 7

    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run(interrupted())
        assert runner.run(fine()) == 7
    finally:
        runner.close()
    assert runner.thread is not None and not runner.thread.is_alive()


def test_a_blocking_call_from_the_loops_own_thread_is_refused() -> None:
    runner = LoopThread("llmclient-test")

    async def fine() -> int:
        return 1

    async def nested() -> int:
        return runner.run(fine())

    try:
        with pytest.raises(RuntimeError, match="would wait for itself"):
            runner.run(nested())
    finally:
        runner.close()


def test_run_in_new_loop_closes_its_loop_and_thread() -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert run_in_new_loop(where(), "llmclient-once") == "llmclient-once"
    assert not any(t.name == "llmclient-once" for t in loop_threads())


# --- closing --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _closing(inner: AsyncIterator[bytes]) -> AsyncIterator[AsyncIterator[bytes]]:
    try:
        yield inner
    finally:
        await inner.aclose()  # type: ignore[attr-defined]


async def _body() -> AsyncIterator[bytes]:
    while True:
        await asyncio.sleep(0)
        yield b"x"


async def _layer(inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async with _closing(inner) as chunks:  # as httpcore's safe_async_iterate does
        async for chunk in chunks:
            yield chunk


class _Response:
    """Holds its own generator, which holds it: a cycle, as an SDK's stream object is."""

    def __init__(self) -> None:
        self.chunks = self._read()

    async def _read(self) -> AsyncIterator[bytes]:
        async for chunk in _layer(_layer(_layer(_body()))):
            yield chunk


def test_dropped_generator_chains_close_outermost_first_at_loop_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`asyncio.run`'s shutdown closed such chains all at once: an inner generator closed
    while its outer one closed it too, and the loop logged an error for each."""
    runner = LoopThread("llmclient-chains")

    async def read_one_and_drop() -> None:
        await anext(_Response().chunks)

    for _ in range(5):
        runner.run(read_one_and_drop())
    runner.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_close_releases_the_thread_the_client_and_an_open_stream_slot(
    provider: str, server: SimulatedServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_sync(provider, server, max_concurrent=1)
    name = f"llmclient-{provider}-sync"
    deltas = client.stream("one two three four five")
    assert next(deltas) == "Simulated"  # the stream holds the only slot
    assert [t.name for t in loop_threads()].count(name) == 1
    client.close()
    client.close()  # idempotent
    # the stream was closed before the loop's own shutdown, which closes generators in no order
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert not any(t.name == name for t in loop_threads())
    assert client.closed
    with pytest.raises(RuntimeError, match="is closed"):
        client.generate_answer("after close")
    with pytest.raises(RuntimeError, match="is closed"):
        client.stream("after close")
    deltas.close()  # nothing left to close: no error
    del deltas
    gc.collect()
    assert "garbage-collected" not in caplog.text  # it was closed, not merely dropped
    # the slot came back: another client of the same server gets it at once
    with make_sync(provider, server, max_concurrent=1) as other:
        started = time.monotonic()
        assert other.generate_answer("next") == "Simulated reply to: next"
        assert time.monotonic() - started < 5
        assert other.stats.in_flight == 0


def test_leaving_a_stream_early_gives_its_slot_back(server: SimulatedServer) -> None:
    with make_sync("openai", server, max_concurrent=1) as client:
        with client.stream("one two three four five") as deltas:
            for delta in deltas:
                assert delta == "Simulated"
                break
        assert client.stats.in_flight == 0
        assert client.generate_answer("next") == "Simulated reply to: next"


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_a_sync_stream_reports_its_tool_calls(provider: str, server: SimulatedServer) -> None:
    weather = Tool("weather", "The weather in a city", {"type": "object", "properties": {}})
    with make_sync(provider, server) as client:
        with client.stream("the weather?", tools=[weather]) as deltas:
            _ = list(deltas)
        assert [call.name for call in deltas.tool_calls] == ["weather"]


def test_a_dropped_sync_client_ends_its_thread(server: SimulatedServer) -> None:
    client = make_sync("ollama", server)
    assert client.generate_answer("x") == "Simulated reply to: x"
    thread = client._runner.thread
    assert thread is not None and thread.is_alive()
    del client
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()


def test_a_client_never_used_closes_without_trouble() -> None:
    client = SyncOpenAIClient("m", base_url="http://127.0.0.1:9/v1")
    client.close()
    assert client.closed
    assert client._runner.thread is None or not client._runner.thread.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_loop_thread_of_its_own(server: SimulatedServer) -> None:
    client = make_sync("ollama", server)
    assert client.generate_answer("parent") == "Simulated reply to: parent"
    with warnings.catch_warnings():  # 3.12+ warns of forking a process that has threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: the parent's loop thread does not exist here
        code = 1
        try:
            signal.alarm(30)  # a child that hangs dies instead
            if client.generate_answer("child") == "Simulated reply to: child":
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.generate_answer("parent again") == "Simulated reply to: parent again"
    client.close()


# --- secrets --------------------------------------------------------------------------------


def test_the_key_never_appears_in_repr(server: SimulatedServer) -> None:
    key = "sk-sync-secret-4711"
    with SyncOpenAIClient("sim-model", base_url=server.openai_base_url, api_key=key) as client:
        assert key not in repr(client) and key not in str(client)
        assert repr(client).startswith("SyncOpenAIClient(OpenAIClient(model='sim-model'")
        with client.stream("hi") as deltas:
            assert key not in repr(deltas)
            list(deltas)
        server.inject("echo_key")
        with pytest.raises(AuthenticationError) as caught:
            client.generate_answer("x")
        assert key not in str(caught.value) and key not in repr(caught.value)


EXIT_SCRIPT = """
import sys
from llmclient import SyncOllamaClient, SyncOpenAIClient

ollama = SyncOllamaClient("sim-model", host=sys.argv[1], max_concurrent=2)
print(ollama.generate_answer("x"))
stream = ollama.stream("one two three four")  # left half-read
print(next(stream))
openai = SyncOpenAIClient("sim-model", base_url=sys.argv[2], max_concurrent=2)
print(openai.generate_answer("y"))
# exit without closing anything
"""


def test_interpreter_exit_closes_what_sync_clients_left_open(server: SimulatedServer) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", EXIT_SCRIPT, server.url, server.openai_base_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == [
        "Simulated reply to: x",
        "Simulated",
        "Simulated reply to: y",
    ]
    assert done.stderr == ""  # no unclosed socket, no task destroyed pending, no stream warning


# --- the twins keep their async clients' signatures -----------------------------------------


def public_calls(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in {"aclose", "settings_for", "default_profile"}
    }


def test_sync_methods_mirror_the_async_methods() -> None:
    async_calls, sync_calls = public_calls(BaseLLMClient), public_calls(SyncClient)
    assert async_calls.keys() <= sync_calls.keys()
    for name, signature in async_calls.items():
        assert sync_calls[name].parameters == signature.parameters, name


@pytest.mark.parametrize(
    ("twin", "original"),
    [
        (SyncOllamaClient, OllamaClient),
        (SyncOpenAIClient, OpenAIClient),
        (SyncAzureOpenAIClient, AzureOpenAIClient),
    ],
)
def test_sync_constructors_take_the_async_constructors_arguments(
    twin: type, original: type
) -> None:
    def parameters(cls: type) -> list[tuple[str, Any, Any]]:
        signature = inspect.signature(cls.__init__)
        return [(p.name, p.kind, p.default) for p in signature.parameters.values()]

    assert parameters(twin) == parameters(original)


TYPED_USE = """\
from llmclient import OpenAIClient, SyncClient, SyncOllamaClient, SyncOpenAIClient

ollama = SyncOllamaClient("m", host=":1", keep_alive="5m", max_concurrent=2, temperature=0)
wrapped: SyncClient[OpenAIClient] = SyncClient(OpenAIClient("m", base_url="http://h/v1"))
inner: OpenAIClient = SyncOpenAIClient("m").async_client
answer: str = ollama.generate_answer("x", ["hi", "hello"], max_tokens=3)
texts: list[str] = [delta.upper() for delta in ollama.stream("x", top_p=0.5)]
vectors: list[list[float]] = wrapped.embed(["a"])
ollama.generate("x", temprature=0)
SyncOllamaClient("m", hots=":1")
"""


def test_type_checkers_see_the_sync_api(tmp_path: Path) -> None:
    (tmp_path / "use.py").write_text(TYPED_USE)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")
    api = pytest.importorskip("mypy.api")
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "--hide-error-context",
            str(tmp_path / "use.py"),
        ]
    )
    assert stderr == ""
    lines = {int(m[1]): m[2] for m in re.finditer(r"use\.py:(\d+): error: (.*)$", stdout, re.M)}
    assert set(lines) == {9, 10}, stdout  # the two typos, nothing else
    assert "temprature" in lines[9] and "hots" in lines[10]
