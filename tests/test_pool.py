"""Endpoint pools over several simulated servers: dispatch by capacity, failover, checks back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from llmclient import (
    OLLAMA_PROFILE,
    OPENAI_PROFILE,
    ConfigurationError,
    EndpointPool,
    FixedLimit,
    LLMConnectionError,
    OllamaClient,
    OpenAIClient,
    RateLimitError,
    ServerBusyError,
    Usage,
    run_concurrent,
)
from llmclient.limits import Endpoint, PoolDispatcher
from llmclient.limits.pool import PoolMember
from llmclient.testing import Fault, SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]
PROFILE = OLLAMA_PROFILE.model_copy(update={"retry": FAST_RETRY})
OPENAI_FAST = OPENAI_PROFILE.model_copy(update={"retry": FAST_RETRY})
CHAT_PATH = {"ollama": "/api/chat", "openai": "/v1/chat/completions"}


def prompts(count: int) -> list[str]:
    return [f"question {i}" for i in range(count)]


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (no wall-clock bound on the test itself beyond a generous cap)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def pool_client(
    provider: str, servers: list[SimulatedServer], **options: float
) -> tuple[OllamaClient | OpenAIClient, list[str]]:
    """A client of `provider` over `servers` (2 slots each), and each server's stats key."""
    if provider == "ollama":
        urls = [server.url for server in servers]
        pool = EndpointPool(dict.fromkeys(urls, 2), **options)  # type: ignore[arg-type]
        return OllamaClient("sim-model", host=pool, profile=PROFILE), urls
    urls = [server.openai_base_url for server in servers]
    pool = EndpointPool(dict.fromkeys(urls, 2), **options)  # type: ignore[arg-type]
    return OpenAIClient("sim-model", base_url=pool, profile=OPENAI_FAST), urls


# --------------------------------------------------------------------- dispatch over HTTP
async def test_work_divides_in_proportion_to_slots(simulated_server_factory: Factory) -> None:
    slots = (1, 2, 4)
    servers = [await simulated_server_factory(parallel=n, latency=0.05) for n in slots]
    pool = EndpointPool({s.url: n for s, n in zip(servers, slots, strict=True)})
    async with OllamaClient("sim-model", host=pool) as client:
        assert client.max_workers == 7
        answers = await run_concurrent(client.generate_answer, prompts(140))
        per_server = client.endpoint_stats
    assert len(answers) == 140
    counts = [s.stats.completed for s in servers]
    assert sum(counts) == 140
    for server, n, count in zip(servers, slots, counts, strict=True):
        share = 140 * n / 7
        assert 0.6 * share <= count <= 1.4 * share, counts
        assert server.stats.peak_in_flight <= n  # never more than its own limit
        assert server.stats.peak_waiting == 0  # never queued at a server while the pool waits
        assert per_server[server.url].answered == count
    assert client.stats.concurrency_limit == 7
    assert [s.stats.peak_in_flight for s in servers] == list(slots)  # 7 workers: all slots used


async def test_a_faster_server_gets_more_work(simulated_server_factory: Factory) -> None:
    fast = await simulated_server_factory(parallel=2, latency=0.02)
    slow = await simulated_server_factory(parallel=2, latency=0.2)
    async with OllamaClient("sim-model", host=[fast.url, slow.url], max_concurrent=2) as client:
        await run_concurrent(client.generate_answer, prompts(80))
    assert fast.stats.completed + slow.stats.completed == 80
    assert fast.stats.completed > 2 * slow.stats.completed  # ideally 10x
    assert max(fast.stats.peak_in_flight, slow.stats.peak_in_flight) <= 2


async def test_openai_list_of_base_urls_streams_and_embeds(
    simulated_server_factory: Factory,
) -> None:
    servers = [await simulated_server_factory(parallel=1, latency=0.2) for _ in range(3)]
    urls = [s.openai_base_url for s in servers]
    async with OpenAIClient("sim-model", base_url=urls, max_concurrent=1) as client:
        assert client.max_workers == 3

        async def streamed(prompt: str) -> str:
            async with client.stream(prompt) as deltas:
                return "".join([delta async for delta in deltas])

        texts = await asyncio.gather(*(streamed(p) for p in prompts(3)))
        vectors = await client.embed(["a", "b"])
    assert all(text.startswith("Simulated reply") for text in texts)
    assert len(vectors) == 2
    # Three streams at once on three one-slot servers: one each, none queued.
    assert [s.stats.by_path["/v1/chat/completions"] for s in servers] == [1, 1, 1]
    assert sum(s.stats.by_path["/v1/embeddings"] for s in servers) == 1
    assert all(s.stats.peak_waiting == 0 for s in servers)


async def test_each_server_keeps_its_own_auto_limit(simulated_server_factory: Factory) -> None:
    servers = [await simulated_server_factory(parallel=2, latency=0.02) for _ in range(2)]
    async with OllamaClient(
        "sim-model", host=[s.url for s in servers], max_concurrent="auto"
    ) as client:
        assert client.max_workers == 2 * PROFILE.adaptive_max
        await run_concurrent(client.generate_answer, prompts(40))
        limits = [stats.concurrency_limit for stats in client.endpoint_stats.values()]
    assert len(limits) == 2
    assert client.stats.concurrency_limit == sum(limits)


# --------------------------------------------------------------------- failover
async def test_a_server_killed_mid_run_loses_no_request(
    simulated_server_factory: Factory,
) -> None:
    servers = [await simulated_server_factory(parallel=2, latency=0.05) for _ in range(3)]
    victim = servers[1]
    url = victim.url
    pool = EndpointPool([s.url for s in servers], recheck_interval=30)
    async with OllamaClient("sim-model", host=pool, profile=PROFILE) as client:
        run = asyncio.create_task(run_concurrent(client.generate_answer, prompts(150)))
        await wait_until(lambda: victim.stats.completed >= 4, "the victim answered")
        await victim.stop()
        answers = await run
        health = client.endpoint_stats[url]
    assert len(answers) == 150
    assert all(answer.startswith("Simulated reply") for answer in answers)
    assert sum(s.stats.completed for s in servers) >= 150
    assert not health.healthy
    assert health.problem is not None and "connection" in health.problem
    assert client.stats.failed == 0


async def test_a_restarted_server_gets_work_again(simulated_server_factory: Factory) -> None:
    first = await simulated_server_factory(parallel=2, latency=0.02)
    second = await simulated_server_factory(parallel=2, latency=0.02)
    url = second.url
    pool = EndpointPool([first.url, url], recheck_interval=0.05)
    async with OllamaClient("sim-model", host=pool, profile=PROFILE) as client:
        await second.stop()
        await run_concurrent(client.generate_answer, prompts(20))
        assert not client.endpoint_stats[url].healthy
        port = int(url.rpartition(":")[2])
        restarted = await simulated_server_factory(parallel=2, latency=0.02, port=port)
        await wait_until(lambda: client.endpoint_stats[url].healthy, "checked back")
        assert restarted.stats.by_path["/api/tags"] >= 1  # the check
        await run_concurrent(client.generate_answer, prompts(40))
    chats = [server.stats.by_path["/api/chat"] for server in (first, restarted)]
    assert chats[1] > 0
    assert sum(chats) == 60  # the checks' listings aside


async def test_repeated_server_errors_take_a_server_out(
    simulated_server_factory: Factory,
) -> None:
    good = await simulated_server_factory(parallel=1, latency=0.01)
    bad = await simulated_server_factory(parallel=4, latency=0.01)
    bad.inject(Fault.INTERNAL_ERROR, 100, path="/api/chat")
    pool = EndpointPool({good.url: 1, bad.url: 4}, unhealthy_after=3, recheck_interval=30)
    async with OllamaClient("sim-model", host=pool, profile=PROFILE) as client:
        answers = await run_concurrent(client.generate_answer, prompts(12))
        health = client.endpoint_stats[bad.url]
    assert len(answers) == 12
    assert not health.healthy
    assert health.problem is not None and "3 server_error in a row" in health.problem
    assert bad.stats.statuses[500] >= 3
    assert good.stats.completed == 12


async def test_the_retry_of_a_server_error_goes_to_another_server(
    simulated_server_factory: Factory,
) -> None:
    failing = await simulated_server_factory(parallel=1, latency=0.01)
    other = await simulated_server_factory(parallel=1, latency=0.01)
    failing.inject(Fault.INTERNAL_ERROR, 1, path="/api/chat")
    async with OllamaClient("sim-model", host=[failing.url, other.url], profile=PROFILE) as client:
        completion = await client.generate("hello")  # both idle: the first listed is tried
        health = client.endpoint_stats[failing.url]
    assert completion.attempts == 2
    assert failing.stats.statuses[500] == 1 and failing.stats.completed == 0
    assert other.stats.completed == 1
    assert health.healthy and health.failed == 1  # one error does not take it out


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_a_server_that_keeps_refusing_is_taken_out_and_checked_back(
    simulated_server_factory: Factory, provider: str
) -> None:
    busy = await simulated_server_factory(parallel=2, latency=0.01)
    healthy = await simulated_server_factory(parallel=2, latency=0.01)
    busy.inject(Fault.BUSY, 100_000)  # 503 to every request, checks included: busy for good
    client, (busy_url, _) = pool_client(
        provider, [busy, healthy], unhealthy_after=3, recheck_interval=0.05
    )
    chat = CHAT_PATH[provider]
    async with client:
        job = run_concurrent(client.generate_answer, prompts(60))
        answers = await asyncio.wait_for(job, 120)  # a hang guard only
        out = client.endpoint_stats[busy_url]
        assert not out.healthy
        assert out.problem is not None and "3 server_busy in a row" in out.problem
        assert "last check: server_busy" in out.problem
        refused, served = busy.stats.by_path[chat], healthy.stats.by_path[chat]
        port = int(busy.url.rpartition(":")[2])
        await busy.stop()  # it recovers: the same server, without its fault
        recovered = await simulated_server_factory(parallel=2, latency=0.01, port=port)
        await wait_until(lambda: client.endpoint_stats[busy_url].healthy, "taken back in")
        await asyncio.wait_for(run_concurrent(client.generate_answer, prompts(40)), 120)
    assert len(answers) == 60 and all(a.startswith("Simulated reply") for a in answers)
    assert client.stats.failed == 0
    assert served == 60  # the busy one answered none
    assert refused < 60  # taken out after a few refusals, not retried there again and again
    assert recovered.stats.by_path[chat] > 0
    assert healthy.stats.by_path[chat] + recovered.stats.by_path[chat] == 100


async def test_the_retry_of_a_refused_request_goes_to_another_server(
    simulated_server_factory: Factory,
) -> None:
    refusing = await simulated_server_factory(parallel=1, latency=0.01)
    other = await simulated_server_factory(parallel=1, latency=0.01)
    refusing.inject(Fault.BUSY, 1, path="/api/chat")
    urls = [refusing.url, other.url]
    async with OllamaClient("sim-model", host=urls, profile=PROFILE) as client:
        completion = await client.generate("hello")  # both idle: the first listed is tried
        health = client.endpoint_stats[refusing.url]
    assert completion.attempts == 2
    assert refusing.stats.statuses[503] == 1 and refusing.stats.completed == 0
    assert other.stats.completed == 1
    assert health.healthy and health.failed == 1  # one refusal does not take it out


async def test_the_last_server_in_the_pool_is_not_taken_out_for_refusing(
    simulated_server_factory: Factory,
) -> None:
    down = await simulated_server_factory(parallel=1)
    busy = await simulated_server_factory(parallel=1, latency=0.01)
    busy.inject(Fault.BUSY, 6, path="/api/chat")
    pool = EndpointPool([down.url, busy.url], unhealthy_after=2, recheck_interval=30)
    await down.stop()
    async with OllamaClient("sim-model", host=pool, profile=PROFILE) as client:
        answers = await run_concurrent(client.generate_answer, prompts(3))
        health = client.endpoint_stats[busy.url]
    # Busy is back-pressure: with no other server to take the work, it is waited out.
    assert len(answers) == 3
    assert busy.stats.statuses[503] == 6 and busy.stats.completed == 3
    assert health.healthy


async def test_all_servers_down_names_each_and_why(simulated_server_factory: Factory) -> None:
    servers = [await simulated_server_factory(parallel=1) for _ in range(2)]
    urls = [s.url for s in servers]
    for server in servers:
        await server.stop()
    async with OllamaClient("sim-model", host=urls, profile=PROFILE) as client:
        with pytest.raises(LLMConnectionError) as caught:
            await client.generate_answer("hello")
    message = str(caught.value)
    assert "every endpoint of the pool is out" in message
    for url in urls:
        assert f"{url}: connection" in message
    assert caught.value.attempts is not None and caught.value.attempts <= FAST_RETRY.max_attempts


# --------------------------------------------------------------------- the dispatcher alone
def dispatcher(*limits: int) -> PoolDispatcher:
    spec = EndpointPool([f"http://h{i}:1" for i in range(len(limits))])

    async def never_pinged(member: PoolMember) -> None:
        raise AssertionError("no server was taken out")

    endpoints = [
        (url, url, Endpoint.local(url, FixedLimit(n)))
        for url, n in zip(spec.urls, limits, strict=True)
    ]
    return PoolDispatcher(spec, endpoints, never_pinged)


async def test_requests_go_to_the_least_loaded_server_first() -> None:
    pool = dispatcher(1, 2, 4)
    chosen = [(await pool.acquire(1))[0].index for _ in range(7)]
    # Least in flight for its limit: the 4-slot server until it is as loaded as the 2-slot one.
    assert chosen == [2, 1, 0, 2, 2, 1, 2]
    assert [m.endpoint.state.in_flight for m in pool.members] == [1, 2, 4]


async def test_no_request_waits_behind_a_busy_server_while_another_is_free() -> None:
    pool = dispatcher(1, 1)
    busy, (lease, _) = await pool.acquire(1)
    other, _ = await pool.acquire(1)
    assert {busy.index, other.index} == {0, 1}
    busy.endpoint.release(lease, 0.01, _success())
    pool.finished(busy, None, 0.01, cancelled=False)
    again, _ = await pool.acquire(1)
    assert again is busy  # the free one, at once


async def test_waiters_are_served_first_come_first_served_across_the_pool() -> None:
    pool = dispatcher(1, 1)
    held = [await pool.acquire(1) for _ in range(2)]
    order: list[int] = []

    async def wait(number: int) -> PoolMember:
        member, _ = await pool.acquire(1)
        order.append(number)
        return member

    waiters = [asyncio.create_task(wait(n)) for n in range(4)]
    await asyncio.sleep(0)
    assert pool.waiting == 4
    for member, (lease, _) in [held[1], held[0]]:  # the second server frees first
        member.endpoint.release(lease, 0.01, _success())
        pool.finished(member, None, 0.01, cancelled=False)
    await asyncio.sleep(0)
    assert order == [0, 1]
    assert (await waiters[0]).index == 1 and (await waiters[1]).index == 0
    for task in waiters[2:]:
        task.cancel()
    await asyncio.gather(*waiters[2:], return_exceptions=True)
    assert pool.waiting == 0


async def test_a_waiter_cancelled_as_it_is_served_passes_its_slot_on() -> None:
    pool = dispatcher(1)
    member, (lease, _) = await pool.acquire(1)
    first = asyncio.create_task(pool.acquire(1))
    second = asyncio.create_task(pool.acquire(1))
    await asyncio.sleep(0)
    member.endpoint.release(lease, 0.01, _success())
    pool.finished(member, None, 0.01, cancelled=False)  # hands the slot to `first`
    first.cancel()
    got, _ = await second
    assert got is member
    assert member.reserved == 0 and member.endpoint.state.in_flight == 1


async def test_a_slot_freed_by_another_client_of_the_server_reaches_the_pool() -> None:
    pool = dispatcher(1)
    shared = pool.members[0].endpoint
    lease, _ = await shared.acquire(1)  # a client outside the pool holds the only slot
    waiting = asyncio.create_task(pool.acquire(1))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    shared.release(lease, 0.01, _success())  # the pool hears nothing of this release
    member, _ = await asyncio.wait_for(waiting, 10)
    assert member is pool.members[0] and shared.state.in_flight == 1


async def test_a_refusing_server_comes_back_when_every_other_is_out() -> None:
    pool = dispatcher(1, 1)
    busy, other = pool.members
    for _ in range(pool.spec.unhealthy_after):
        pool.finished(busy, ServerBusyError("server busy"), 0.01, cancelled=False)
    assert not busy.healthy and other.healthy
    pool.finished(other, LLMConnectionError("connection refused"), 0.01, cancelled=False)
    # It is up, only busy: back-pressure is waited out there rather than failing every request.
    assert busy.healthy and busy.problem is None
    assert not other.healthy
    await pool.aclose()


def _success():  # type: ignore[no-untyped-def]
    from llmclient.limits import Outcome

    return Outcome.SUCCESS


# --------------------------------------------------------------------- settings
def test_comma_separated_environment_makes_a_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu1:11434, gpu2:11434")
    settings = OllamaClient.settings_for("m")
    assert settings.pool is not None
    assert settings.base_urls == ("http://gpu1:11434", "http://gpu2:11434")
    assert settings.endpoint == "http://gpu1:11434, http://gpu2:11434"
    assert ("base_url", "http://gpu1:11434,http://gpu2:11434", "env OLLAMA_HOST") in (
        settings.rows()
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://a:1,ftp://b", "'ftp://b'"),
        ("http://a:1,,http://b:2", "an empty URL"),
        ("http://a:1,http://a:1", "listed twice"),
    ],
)
def test_each_url_of_the_variable_is_checked(
    monkeypatch: pytest.MonkeyPatch, value: str, shown: str
) -> None:
    monkeypatch.setenv("LLMCLIENT_OPENAI_BASE_URL", value)
    with pytest.raises(ConfigurationError) as caught:
        OpenAIClient.settings_for("m")
    assert f"invalid environment: LLMCLIENT_OPENAI_BASE_URL={value!r}" in str(caught.value)
    assert shown in str(caught.value)


def test_each_url_of_the_argument_is_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"base_url=\['http://a:1', 'nope:x'\]: 'nope:x'"):
        OpenAIClient("m", base_url=["http://a:1", "nope:x"])
    with pytest.raises(ConfigurationError, match="base_url"):
        OpenAIClient("m", base_url=[])


def test_an_explicit_pool_gives_each_server_its_limit() -> None:
    pool = EndpointPool({"http://gpu1:11434": 1, "http://gpu2:11434": None, "gpu3": "auto"})
    client = OllamaClient("m", host=pool, max_concurrent=2)
    assert client.settings.base_urls == (
        "http://gpu1:11434",
        "http://gpu2:11434",
        "http://gpu3:11434",
    )
    assert client.max_workers == 1 + 2 + OLLAMA_PROFILE.adaptive_max
    assert client.stats.concurrency_limit == 1 + 2 + 1
    assert list(client.endpoint_stats) == list(client.settings.base_urls)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"endpoints": []}, "a pool needs a URL"),
        ({"endpoints": {"http://a:1": 0}}, "max_concurrent=0 for http://a:1"),
        ({"endpoints": ["http://a:1"], "unhealthy_after": 0}, "unhealthy_after=0"),
        ({"endpoints": ["http://a:1"], "recheck_interval": -1}, "recheck_interval=-1"),
    ],
)
def test_bad_pools_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        EndpointPool(**kwargs)  # type: ignore[arg-type]


def test_probe_interval_is_the_deprecated_name_of_recheck_interval() -> None:
    with pytest.warns(DeprecationWarning, match="use recheck_interval="):
        pool = EndpointPool(["http://a:1"], probe_interval=0.5)
    assert pool.recheck_interval == 0.5 and pool.probe_interval == 0.5
    assert pool == EndpointPool(["http://a:1"], recheck_interval=0.5)
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ConfigurationError, match="probe_interval=0"),
    ):
        EndpointPool(["http://a:1"], probe_interval=0)


def test_one_limit_instance_cannot_serve_two_servers() -> None:
    with pytest.raises(ConfigurationError, match="one Limit instance"):
        OllamaClient("m", host=["http://a:1", "http://b:2"], max_concurrent=FixedLimit(2))
    OllamaClient("m", host=["http://a:1", "http://b:2"], max_concurrent=lambda: FixedLimit(2))


async def test_a_pool_ticket_names_its_server_and_its_release_judges_it() -> None:
    """The admission seam: the pool's ticket says where the attempt goes, and releasing it
    gives the slot back, counts the outcome and takes a broken server out."""
    pool = dispatcher(1, 1)
    first = await pool.admit(1)
    second = await pool.admit(1)
    assert {first.base_url, second.base_url} == {"http://h0:1", "http://h1:1"}
    assert first.where == first.base_url and first.concurrency_limit == 1
    assert first.release(None, 0.01, Usage(1, 1)) == 0.0
    answered = next(m for m in pool.members if m.url == first.base_url)
    assert answered.answered == 1 and answered.endpoint.state.in_flight == 0
    assert second.release(LLMConnectionError("connection refused"), 0.01) == 0.0
    broken = next(m for m in pool.members if m.url == second.base_url)
    assert not broken.healthy and broken.endpoint.state.in_flight == 0
    assert (await pool.admit(1)).base_url == first.base_url  # only the healthy one is left
    await pool.aclose()


async def test_an_endpoint_ticket_pauses_on_a_retry_after_within_max_pause() -> None:
    endpoint = Endpoint.local("http://h:1", FixedLimit(2))
    short = await endpoint.admit(1, max_pause=5)
    long = await endpoint.admit(1, max_pause=5)
    assert short.base_url is None and short.where is None
    assert long.release(RateLimitError("slow down", retry_after=60), 0.01) == 0.0
    assert endpoint.state.pause_left() == 0.0  # beyond max_pause: the call fails instead
    assert short.release(RateLimitError("slow down", retry_after=0.5), 0.01) == 0.5
    assert 0 < (endpoint.state.pause_left() or 0) <= 0.5
    assert endpoint.state.in_flight == 0


# --------------------------------------------------------------------- health over HTTP
async def test_a_long_retry_after_pauses_a_server_no_longer_than_max_server_wait(
    simulated_server_factory: Factory,
) -> None:
    """It kept the server out for 60 s whatever the retry policy said."""
    limited = await simulated_server_factory(parallel=1, latency=0.01)
    other = await simulated_server_factory(parallel=1, latency=0.01)
    limited.inject(Fault.RATE_LIMIT, 1, retry_after=86400, path="/api/chat")
    retry = FAST_RETRY.model_copy(update={"max_server_wait": 0.3})
    profile = OLLAMA_PROFILE.model_copy(update={"retry": retry})
    async with OllamaClient("sim-model", host=[limited.url, other.url], profile=profile) as client:
        with pytest.raises(RateLimitError):  # a day is past max_server_wait: at once
            await client.generate("hello")
        await asyncio.sleep(0.5)
        for _ in range(2):
            await client.generate("hello")  # both idle: the first listed is tried
    assert limited.stats.completed == 2
    assert other.stats.completed == 0


async def test_a_busy_ollama_answering_its_listing_gets_one_request_per_check(
    simulated_server_factory: Factory,
) -> None:
    """A busy Ollama answers `/api/tags`: the check let it back in for `unhealthy_after`
    more refusals each time; now its first refusal back takes it out again, for longer."""
    busy = await simulated_server_factory(parallel=2, latency=0.01)
    healthy = await simulated_server_factory(parallel=2, latency=0.01)
    busy.inject(Fault.BUSY, 100_000, path="/api/chat")  # the listing answers
    client, (busy_url, _) = pool_client(
        "ollama", [busy, healthy], unhealthy_after=3, recheck_interval=0.02
    )
    async with client:
        job = run_concurrent(client.generate_answer, prompts(150))
        answers = await asyncio.wait_for(job, 120)  # a hang guard only
        out = client.endpoint_stats[busy_url]
    assert len(answers) == 150 and client.stats.failed == 0
    assert out.answered == 0
    assert busy.stats.by_path["/api/tags"] >= 1  # it was checked, and answered
    refused = busy.stats.by_path["/api/chat"]
    assert refused <= 3 + 2 * (1 + busy.stats.by_path["/api/tags"])  # its 2 slots per return


async def test_timeouts_with_and_without_every_slot_taken_count_in_one_run(
    simulated_server_factory: Factory,
) -> None:
    """Two requests time out together on a hanging server: the first with both slots
    taken (overload), the second with one (a fault). They were counted apart, so
    `unhealthy_after=2` never took the server out when no waiter refilled the slot."""
    hanging = await simulated_server_factory(parallel=2, latency=0.01)
    healthy = await simulated_server_factory(parallel=2, latency=0.01)
    hanging.inject(Fault.HANG, 100_000)
    profile = PROFILE.model_copy(update={"timeout": 0.3})
    pool = EndpointPool({hanging.url: 2, healthy.url: 2}, unhealthy_after=2, recheck_interval=5)
    async with OllamaClient("sim-model", host=pool, profile=profile) as client:
        answers = await asyncio.wait_for(run_concurrent(client.generate_answer, prompts(4)), 60)
        out = client.endpoint_stats[hanging.url]
    assert len(answers) == 4 and client.stats.failed == 0
    assert out.failed == 2
    assert not out.healthy
    assert out.problem is not None and "2 timeout in a row" in out.problem


async def test_a_hanging_server_is_taken_out_and_checked_back(
    simulated_server_factory: Factory,
) -> None:
    """It accepts connections and never answers: every slot held, its timeouts read as
    overload and it was never taken out; each of its requests cost a full timeout."""
    hanging = await simulated_server_factory(parallel=2, latency=0.01)
    healthy = await simulated_server_factory(parallel=2, latency=0.01)
    hanging.inject(Fault.HANG, 100_000)  # its checks hang too
    profile = PROFILE.model_copy(update={"timeout": 0.3})
    url = hanging.url
    pool = EndpointPool({url: 2, healthy.url: 2}, unhealthy_after=2, recheck_interval=0.05)
    async with OllamaClient("sim-model", host=pool, profile=profile) as client:
        answers = await asyncio.wait_for(run_concurrent(client.generate_answer, prompts(40)), 120)
        out = client.endpoint_stats[url]
        hung = hanging.stats.statuses["hang"]
        await hanging.stop()
        port = int(url.rpartition(":")[2])
        recovered = await simulated_server_factory(parallel=2, latency=0.01, port=port)
        await wait_until(lambda: client.endpoint_stats[url].healthy, "checked back")
        await run_concurrent(client.generate_answer, prompts(20))
    assert len(answers) == 40 and client.stats.failed == 0
    assert not out.healthy
    assert out.problem is not None and "2 timeout in a row" in out.problem
    assert hung <= 2 + 2 + 4  # its 2 slots' timeouts, the checks': not one per request
    assert recovered.stats.by_path["/api/chat"] > 0
