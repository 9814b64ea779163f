"""Shared limits in Redis, against a real redis-server started for each test.

"Processes" within one test are separate event loops or separate backends: each has its own
connection, holder ids and local state, as another process would. The multi-process and
crash tests use real processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from llmclient import (
    ConfigurationError,
    LimitsUnavailableError,
    OllamaClient,
    OpenAIClient,
    run_concurrent,
)
from llmclient.limits import FixedLimit, shared_endpoint
from llmclient.limits.backends.redis import FleetLimit, RedisBackend
from llmclient.testing import SimulatedServer
from llmclient.testing.redis import RedisServer
from tests.conftest import server_in_thread
from tests.redis_holder import HOLDER_KEY, start_holder

KEY = ("http://127.0.0.1:9",)


@pytest.fixture
def slow_server() -> Iterator[SimulatedServer]:
    """A 4-slot server with an unbounded queue, in its own thread (reachable from processes)."""
    with server_in_thread(parallel=4, latency=0.02) as server:
        yield server


def keys_of(url: str) -> list[str]:
    with redis.Redis.from_url(url) as r:
        return sorted(k.decode() for k in r.keys("*"))


# ---------------------------------------------------------------------- one process


async def test_client_with_redis_limits_holds_the_server_at_its_limit(
    redis_server: RedisServer, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=8, latency=0.01)
    async with OllamaClient("m", host=server.url, limits=redis_server.url, max_concurrent=3) as c:
        answers = await run_concurrent(c.generate_answer, [f"q{i}" for i in range(60)])
    assert len(answers) == 60
    assert server.stats.completed == 60
    assert server.stats.peak_in_flight == 3


async def test_arrival_order_is_kept_across_processes(redis_server: RedisServer) -> None:
    def process(lease: float) -> Any:  # another backend is another "process": its own space
        backend = RedisBackend(redis_server.url, lease=lease)
        return shared_endpoint(KEY, str(lease), FixedLimit(1), None, None, backend)

    holder = process(2.0)
    lease, _ = await holder.acquire(0)
    order: list[str] = []

    async def wait_in_line(endpoint: Any) -> None:
        got, _ = await endpoint.acquire(0)
        order.append(endpoint.name)
        await asyncio.sleep(0.05)
        endpoint.state.release_slot(got)

    r = redis.asyncio.Redis.from_url(redis_server.url)
    queue = "llmclient:{http://127.0.0.1:9}:queue"
    tasks = []
    for n, lease_time in enumerate([2.4, 2.1, 2.3, 2.2]):
        tasks.append(asyncio.create_task(wait_in_line(process(lease_time))))
        while await r.zcard(queue) < n + 1:  # noqa: ASYNC110 (queued before the next arrives)
            await asyncio.sleep(0.01)
    holder.state.release_slot(lease)
    await asyncio.gather(*tasks)
    await r.aclose()
    assert order == ["2.4", "2.1", "2.3", "2.2"]


async def test_a_release_goes_to_the_first_in_line_not_to_the_releasers_own_waiter(
    redis_server: RedisServer,
) -> None:
    def process(name: str, lease: float) -> Any:
        backend = RedisBackend(redis_server.url, lease=lease)
        return shared_endpoint(KEY, name, FixedLimit(4), None, None, backend)

    a, b, c = process("a", 5.0), process("b", 4.0), process("c", 3.0)
    held = {name: [(await p.acquire(0))[0] for _ in range(2)] for name, p in (("a", a), ("c", c))}
    r = redis.asyncio.Redis.from_url(redis_server.url)
    slots, queue = "llmclient:{http://127.0.0.1:9}:slots", "llmclient:{http://127.0.0.1:9}:queue"
    order: list[str] = []

    async def wait_in_line(endpoint: Any, name: str) -> object:
        lease, _ = await endpoint.acquire(0)
        order.append(name)
        return lease

    tasks = {}
    for n, (endpoint, name) in enumerate([(b, "b1"), (a, "a1"), (a, "a2"), (b, "b2")]):
        tasks[name] = asyncio.create_task(wait_in_line(endpoint, name))
        while await r.zcard(queue) < n + 1:  # noqa: ASYNC110 (queued before the next arrives)
            await asyncio.sleep(0.01)

    async def give_back(endpoint: Any, lease: object, expected: list[str]) -> None:
        endpoint.state.release_slot(lease)
        for _ in range(300):
            if len(order) == len(expected):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # a second grant, if one were made, would show by now
        assert order == expected
        assert await r.zcard(slots) == 4  # the freed slot went straight to one waiter

    # a's release goes to b1, first in line, although a has waiters of its own.
    await give_back(a, held["a"][0], ["b1"])
    await give_back(a, held["a"][1], ["b1", "a1"])  # now a1 is first: handed over within a
    await give_back(c, held["c"][0], ["b1", "a1", "a2"])
    await give_back(c, held["c"][1], ["b1", "a1", "a2", "b2"])
    assert await r.zcard(queue) == 0
    for name, endpoint in (("b1", b), ("a1", a), ("a2", a), ("b2", b)):
        endpoint.state.release_slot(await tasks[name])
    await r.aclose()


async def test_a_grant_whose_message_is_lost_still_reaches_its_waiter(
    redis_server: RedisServer,
) -> None:
    a = shared_endpoint(KEY, "a", FixedLimit(1), None, None, RedisBackend(redis_server.url))
    backend_b = RedisBackend(redis_server.url, lease=2.0)
    b = shared_endpoint(KEY, "b", FixedLimit(1), None, None, backend_b)
    held, _ = await a.acquire(0)
    waiting = asyncio.create_task(b.acquire(0))
    r = redis.asyncio.Redis.from_url(redis_server.url)
    while await r.zcard("llmclient:{http://127.0.0.1:9}:queue") < 1:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    # Cut every pub/sub connection, then release: the grant to b is published to nobody.
    await r.client_kill_filter(_type="pubsub")
    a.state.release_slot(held)
    lease, _ = await asyncio.wait_for(waiting, 30)  # b re-sends its waiter and finds the slot
    assert await r.zrange("llmclient:{http://127.0.0.1:9}:slots", 0, -1) == [lease.encode()]
    b.state.release_slot(lease)
    await r.aclose()


async def test_many_waiters_of_several_processes_never_exceed_the_limit(
    redis_server: RedisServer,
) -> None:
    limit, in_flight, peak = 3, 0, 0
    done: dict[str, int] = {}

    async def one(endpoint: Any, n: int) -> None:
        nonlocal in_flight, peak
        lease, _ = await endpoint.acquire(0)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (n % 4))
        in_flight -= 1
        endpoint.state.release_slot(lease)
        done[endpoint.name] = done.get(endpoint.name, 0) + 1

    endpoints = [
        shared_endpoint(
            KEY, f"p{i}", FixedLimit(limit), None, None, RedisBackend(redis_server.url, lease=lease)
        )
        for i, lease in enumerate([5.0, 4.0, 3.0])
    ]
    await asyncio.gather(*(one(e, n) for n in range(40) for e in endpoints))
    assert peak == limit
    assert done == {"p0": 40, "p1": 40, "p2": 40}
    r = redis.asyncio.Redis.from_url(redis_server.url)
    for _ in range(100):  # the last releases are sent in the background
        if await r.zcard("llmclient:{http://127.0.0.1:9}:slots") == 0:
            break
        await asyncio.sleep(0.02)
    assert await r.zcard("llmclient:{http://127.0.0.1:9}:slots") == 0
    assert await r.zcard("llmclient:{http://127.0.0.1:9}:queue") == 0
    await r.aclose()


async def test_pause_reaches_every_process(redis_server: RedisServer) -> None:
    a = shared_endpoint(KEY, "a", FixedLimit(2), None, None, RedisBackend(redis_server.url))
    b = shared_endpoint(
        KEY, "b", FixedLimit(2), None, None, RedisBackend(redis_server.url, lease=4)
    )
    a.pause(30)
    await asyncio.sleep(0.2)  # the pause is written in the background
    assert 25 < await b.state.paused_for() <= 30
    assert b.state.paused_for != 0


async def test_rate_buckets_are_shared_and_settled(redis_server: RedisServer) -> None:
    a = RedisBackend(redis_server.url).state(KEY, 4, rpm=6, tpm=None)
    b = RedisBackend(redis_server.url, lease=4).state(KEY, 4, rpm=6, tpm=None)
    for _ in range(3):
        assert await a._space.reserve(6, None, 0) == 0
        assert await b._space.reserve(6, None, 0) == 0
    # The bucket of 6 is empty for both: the next one waits about 60 s / 6.
    assert 8_000 < await b._space.reserve(6, None, 0) <= 10_000

    t1 = RedisBackend(redis_server.url).state(("tpm",), 4, rpm=None, tpm=1000)
    t2 = RedisBackend(redis_server.url, lease=4).state(("tpm",), 4, rpm=None, tpm=1000)
    assert await t1.reserve(900) == 900
    t1.settle(900, 100)  # used far less than estimated: 800 come back
    await asyncio.sleep(0.2)
    assert await t2._space.reserve(None, 1000, 800) == 0
    # Debt: usage above the estimate is charged, so the next reservation waits.
    t2.settle(800, 1700)
    await asyncio.sleep(0.2)
    assert await t1._space.reserve(None, 1000, 100) > 30_000


async def test_keys_are_namespaced_expire_and_hold_no_key(
    redis_server: RedisServer, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=2, latency=0.0)
    secret = "sk-test-DO-NOT-LEAK-4242"
    async with OpenAIClient(
        "m", base_url=server.url + "/v1", api_key=secret, limits=redis_server.url, rpm=600
    ) as client:
        await client.generate_answer("hi")
        await asyncio.sleep(0.2)
    keys = keys_of(redis_server.url)
    assert keys and all(k.startswith("llmclient:{") for k in keys)
    with redis.Redis.from_url(redis_server.url) as r:
        for key in keys:
            assert r.pttl(key) > 0, key
            assert secret not in repr(r.dump(key))
    assert not any(secret in k for k in keys)
    assert secret not in repr(client)


# ---------------------------------------------------------------------- Redis failures


async def test_unreachable_redis_fails_fast_when_asked(
    redis_server: RedisServer, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory()
    redis_server.stop()
    url = redis_server.url.replace("127.0.0.1", ":s3cret@127.0.0.1")
    client = OllamaClient("m", host=server.url, limits=url, on_backend_error="fail")
    with pytest.raises(LimitsUnavailableError) as caught:
        await client.generate_answer("hi")
    message = str(caught.value)
    assert f"redis://127.0.0.1:{redis_server.port}/0" in message
    assert "s3cret" not in message
    assert caught.value.fatal
    assert server.stats.requests == 0  # nothing went out without its limit
    await client.aclose()


async def test_waiting_for_redis_ends_in_the_clear_error(redis_server: RedisServer) -> None:
    redis_server.stop()
    backend = RedisBackend(redis_server.url, wait_timeout=0.3)
    endpoint = shared_endpoint(KEY, "x", FixedLimit(1), None, None, backend)
    with pytest.raises(LimitsUnavailableError, match=r"waited .* of wait_timeout=0\.3s"):
        await endpoint.acquire(0)


async def test_a_run_waits_through_a_redis_restart(
    redis_server: RedisServer, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=2, latency=0.02)
    client = OllamaClient("m", host=server.url, limits=redis_server.url, max_concurrent=2)
    await client.generate_answer("warm up")
    redis_server.stop()
    run = asyncio.create_task(run_concurrent(client.generate_answer, [f"q{i}" for i in range(20)]))
    await asyncio.sleep(0.5)
    assert not run.done()  # waiting for Redis, not sending without limits
    assert server.stats.completed == 1
    redis_server.start()
    answers = await asyncio.wait_for(run, 30)
    assert len(answers) == 20
    assert server.stats.peak_in_flight <= 2
    await client.aclose()


async def test_restarted_redis_relearns_live_leases(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, lease=0.6)
    endpoint = shared_endpoint(KEY, "x", FixedLimit(4), None, None, backend)
    held = [(await endpoint.acquire(0))[0] for _ in range(3)]
    redis_server.stop()
    redis_server.start()
    slots = "llmclient:{http://127.0.0.1:9}:slots"
    r = redis.asyncio.Redis.from_url(redis_server.url)
    for _ in range(200):  # the heartbeat writes them back within one lease time
        if await r.zcard(slots) == 3:
            break
        await asyncio.sleep(0.05)
    assert await r.zcard(slots) == 3
    for lease in held:
        endpoint.state.release_slot(lease)
    for _ in range(100):
        if await r.zcard(slots) == 0:
            break
        await asyncio.sleep(0.05)
    assert await r.zcard(slots) == 0
    await r.aclose()


# ---------------------------------------------------------------------- "auto" fleet-wide


async def test_auto_is_one_fleet_limit_steered_by_one_leader(
    redis_server: RedisServer, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.02)
    clients = [
        OllamaClient("m", host=server.url, max_concurrent="auto", limits=backend)
        for backend in (RedisBackend(redis_server.url), RedisBackend(redis_server.url, lease=4))
    ]
    prompts = [f"q{i}" for i in range(120)]
    await asyncio.gather(*(run_concurrent(c.generate_answer, prompts) for c in clients))
    limits = [c._admission.get().limit for c in clients]
    assert all(isinstance(limit, FleetLimit) for limit in limits)
    with redis.Redis.from_url(redis_server.url) as r:
        leader = r.get(f"llmclient:{{{server.url}}}:leader".replace("http://", "http://"))
        published = r.hget(f"llmclient:{{{server.url}}}:conf", "limit")
    assert leader is not None
    assert published is not None and int(published) > 1  # it learned from all samples
    await asyncio.sleep(0.5)  # the follower reads the published limit
    assert [limit.limit for limit in limits] == [int(published)] * 2
    for c in clients:
        await c.aclose()


async def test_a_fleet_limit_starts_from_the_servers_figure(
    redis_server: RedisServer, simulated_server_factory: Any
) -> None:
    server = await simulated_server_factory(parallel=5, introspection="llama.cpp", latency=0.01)
    url = server.openai_base_url
    limits = RedisBackend(redis_server.url)
    async with OpenAIClient("sim-model", base_url=url, max_concurrent="auto", limits=limits) as c:
        await c.generate_answer("x")
        limit = c._admission.get().limit
        assert isinstance(limit, FleetLimit)
        assert limit.inner.limit >= 4  # started at 5 (not at 1); one sample may step it


# ---------------------------------------------------------------------- configuration


def test_limits_setting_from_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    client = OllamaClient("m", limits="redis://:pw@10.1.2.3:6379/2")
    assert client._admission.backend == RedisBackend("redis://:pw@10.1.2.3:6379/2")
    row = dict((n, (v, s)) for n, v, s in client.settings.rows())["limits"]
    assert row == ("redis://10.1.2.3:6379/2", "argument")
    monkeypatch.setenv("LLMCLIENT_OLLAMA_LIMITS", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("LLMCLIENT_ON_BACKEND_ERROR", "fail")
    settings = OllamaClient.settings_for("m")
    assert settings.limits == "redis://127.0.0.1:1/0"
    assert settings.on_backend_error == "fail"
    assert settings.sources["limits"] == "env LLMCLIENT_OLLAMA_LIMITS"
    assert OllamaClient("m", limits="local")._admission.backend != client._admission.backend


@pytest.mark.parametrize(
    ("value", "shown"),
    [("http://:pw@h:1", "'http://h:1'"), ("redis:/:pw@host", "'<hidden>'"), ("x", "'x'")],
)
def test_bad_limits_values_are_named_without_passwords(
    monkeypatch: pytest.MonkeyPatch, value: str, shown: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        OllamaClient("m", limits=value)
    assert f"limits={shown}" in str(caught.value) and "pw" not in str(caught.value)
    monkeypatch.setenv("LLMCLIENT_LIMITS", value)
    with pytest.raises(ConfigurationError, match=f"LLMCLIENT_LIMITS={shown}"):
        OllamaClient("m")
    with pytest.raises(ConfigurationError, match="on_backend_error='retry'"):
        OllamaClient("m", limits="local", on_backend_error="retry")  # type: ignore[arg-type]


def test_without_the_redis_package_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import llmclient\n"
        "try:\n"
        "    llmclient.OllamaClient('m', limits='redis://127.0.0.1:1/0')\n"
        "except llmclient.ConfigurationError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'llmclient[redis]'" in out.stdout


def test_import_llmclient_does_not_import_redis() -> None:
    code = "import sys, llmclient; llmclient.OllamaClient('m'); print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------- real processes


def _worker(server_url: str, limits: str, n: int, barrier: Any, results: Any) -> None:
    """One process's share of the run; reports how many of its requests failed."""

    async def work() -> int:
        client = OllamaClient("m", host=server_url, limits=limits, max_concurrent=4, timeout=60)
        async with client:
            await client.generate_answer("warm up")  # connect before the common start
            barrier.wait(120)
            out = await run_concurrent(
                client.generate_answer, [f"q{i}" for i in range(n)], return_exceptions=True
            )
        return sum(isinstance(o, BaseException) for o in out)

    try:
        results.put(asyncio.run(work()))
    except BaseException as error:
        results.put(repr(error))


def _run_fleet(server: SimulatedServer, limits: str, processes: int = 4, n: int = 100) -> int:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(server.url, limits, n, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=300) for _ in workers]
    finally:
        for worker in workers:
            worker.join(10)
            worker.kill()
    assert all(isinstance(r, int) for r in reports), reports
    return sum(reports)


def test_four_processes_share_one_limit_in_redis(
    redis_server: RedisServer, slow_server: SimulatedServer
) -> None:
    failures = _run_fleet(slow_server, redis_server.url)
    assert failures == 0
    assert slow_server.stats.completed == 404
    assert slow_server.stats.peak_in_flight == 4
    assert slow_server.stats.peak_waiting == 0  # nothing sent beyond the shared limit


def test_four_processes_with_local_limits_put_sixteen_on_the_server(
    slow_server: SimulatedServer,
) -> None:
    failures = _run_fleet(slow_server, "local")
    assert failures == 0
    # The failure mode shared limits prevent: 4 x 4 on the wire, 12 queued at the server
    # (it queues only once its 4 slots are taken).
    assert slow_server.stats.peak_in_flight == 4
    assert slow_server.stats.peak_waiting == 12


def test_a_killed_holders_slots_come_back_after_the_lease(redis_server: RedisServer) -> None:
    lease = 2.0
    holder = start_holder(redis_server.url, lease, 2)
    try:

        async def take_both(wait: float) -> float:
            backend = RedisBackend(redis_server.url, lease=lease)
            endpoint = shared_endpoint(HOLDER_KEY, "x", FixedLimit(2), None, None, backend)
            started = time.monotonic()
            async with asyncio.timeout(wait):
                await endpoint.acquire(0)
                await endpoint.acquire(0)
            return time.monotonic() - started

        # Alive, its heartbeat keeps both slots well past one lease time.
        with pytest.raises(TimeoutError):
            asyncio.run(take_both(lease * 2))
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        assert asyncio.run(take_both(30)) < 30
    finally:
        holder.kill()
        holder.wait(10)


_SEQUENTIAL_LOOPS = """
import asyncio, sys
from llmclient import OllamaClient

async def work(url, limits):
    client = OllamaClient("m", host=url, limits=limits)
    for _ in range(20):
        await client.generate_answer("x")

for _ in range(4):  # each asyncio.run must end: no background task may outlive its loop
    asyncio.run(work(sys.argv[1], sys.argv[2]))
print("done")
"""


def test_event_loops_with_redis_limits_shut_down(
    redis_server: RedisServer, slow_server: SimulatedServer
) -> None:
    command = [sys.executable, "-c", _SEQUENTIAL_LOOPS, slow_server.url, redis_server.url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "done", done.stderr
    assert "Task was destroyed" not in done.stderr
    assert slow_server.stats.completed == 80
