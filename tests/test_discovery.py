"""Limits learned from local servers: llama.cpp's `/props`, vLLM's `/metrics`, where they apply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from llmclient import OllamaClient, OpenAIClient, ServerCapacity, run_concurrent
from llmclient.limits import EndpointPool, LatencyLimit, PoolDispatcher
from llmclient.limits.discovery import (
    VLLM_DEFAULT_MAX_NUM_SEQS,
    capacity_from_llamacpp_props,
    capacity_from_vllm_metrics,
    server_root,
)
from llmclient.testing import SimulatedServer
from llmclient.testing._http import HTTPServer, Request, Responder
from llmclient.testing.pytest_plugin import ServerFactory
from llmclient.testing.redis import RedisServer
from tests.cli.helpers import run_cli

PROMPTS = [f"q{i}" for i in range(24)]


# --- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "slots"),
    [
        ({"total_slots": 3}, 3),
        ({"total_slots": 1, "model_path": "x.gguf"}, 1),
        ({"total_slots": 0}, None),
        ({"total_slots": -2}, None),
        ({"total_slots": "4"}, None),
        ({"total_slots": True}, None),
        ({"model_path": "x.gguf"}, None),
        (["total_slots", 3], None),
    ],
)
def test_llamacpp_props(props: object, slots: int | None) -> None:
    found = capacity_from_llamacpp_props(props, 64)
    assert (found.slots if found else None) == slots


def test_a_figure_above_the_ceiling_is_capped_and_the_servers_kept() -> None:
    found = capacity_from_llamacpp_props({"total_slots": 10**9}, 64)
    assert found == ServerCapacity(64, "llama.cpp /props total_slots, capped at 64", reported=10**9)
    page = "vllm:num_requests_running 1e30\nvllm:num_requests_waiting 1\n"
    found = capacity_from_vllm_metrics(page, 64)
    assert found is not None and (found.slots, found.reported) == (64, int(1e30))
    assert capacity_from_llamacpp_props({"total_slots": 64}, 64) == ServerCapacity(
        64, "llama.cpp /props total_slots"
    )


def test_vllm_metrics_add_up_one_models_engines_take_the_largest_model() -> None:
    page = "\n".join(
        [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            'vllm:num_requests_running{engine="0",model_name="a"} 5.0',
            'vllm:num_requests_running{engine="1",model_name="a"} 4.0',
            'vllm:num_requests_running{model_name="b"} 7.0',
            'vllm:num_requests_running{model_name="c"} -100.0',
            'vllm:num_requests_running_other{model_name="a"} 100.0',
            'vllm:num_requests_waiting{model_name="a"} 2.0',
            'vllm:num_requests_waiting{model_name="b"} NaN',
        ]
    )
    found = capacity_from_vllm_metrics(page, 64)
    assert found is not None and found.slots == 9  # a's two engines; not a + b, not b
    assert "waiting" in found.source


def test_vllm_metrics_of_a_server_that_is_not_full_give_the_capped_default() -> None:
    page = "vllm:num_requests_running 2\nvllm:num_requests_waiting 0\n"
    assert capacity_from_vllm_metrics(page, 64) == ServerCapacity(
        64, "vLLM /metrics (not full: vLLM's default batch, capped)"
    )
    found = capacity_from_vllm_metrics(page, 1000)
    assert found is not None and found.slots == VLLM_DEFAULT_MAX_NUM_SEQS


@pytest.mark.parametrize(
    "page",
    ["", "llamacpp:requests_processing 2\n", "vllm:num_requests_running 2\n", "<html></html>"],
)
def test_pages_that_are_not_vllms_say_nothing(page: str) -> None:
    assert capacity_from_vllm_metrics(page, 64) is None


def test_server_capacity_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="slots must be at least 1, got 0"):
        ServerCapacity(0, "x")


@pytest.mark.parametrize(
    ("base_url", "root"),
    [
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://box/llm/v1", "http://box/llm"),
    ],
)
def test_server_root(base_url: str, root: str) -> None:
    assert server_root(base_url) == root


# --- clients against the simulated servers --------------------------------------------------------

PageServer = Callable[[str], Awaitable[str]]


@pytest_asyncio.fixture
async def vllm_page_server() -> AsyncIterator[PageServer]:
    """`await serve(page)`: the base URL of a server whose `/metrics` answers `page` (and
    everything else 404), for pages no live simulated vLLM would show."""
    servers: list[HTTPServer] = []

    async def serve(page: str) -> str:
        async def handle(request: Request, responder: Responder) -> None:
            found = request.path == "/metrics"
            body = page.encode() if found else b'{"error": "not found"}'
            await responder.send(200 if found else 404, [("content-type", "text/plain")], body)

        server = HTTPServer(handle)
        servers.append(server)
        return f"http://127.0.0.1:{await server.start('127.0.0.1', 0)}/v1"

    try:
        yield serve
    finally:
        for server in servers:
            await server.stop()


async def test_a_billion_llamacpp_slots_are_capped_at_adaptive_max_and_logged_once(
    simulated_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await simulated_server_factory(
        parallel=1_000_000_000, introspection="llama.cpp", latency=0.001
    )
    caplog.set_level(logging.WARNING, logger="llmclient")
    async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
        assert await client.discover_limits() == client.profile.adaptive_max == 64
        await run_concurrent(client.generate_answer, PROMPTS, progress_bar=False)
        assert await client.discover_limits() == 64
        assert client.stats.concurrency_limit == 64
    capped = [r for r in caplog.records if "serves 1000000000" in r.getMessage()]
    assert len(capped) == 1 and capped[0].levelno == logging.WARNING
    assert capped[0].name == "llmclient"
    assert server.openai_base_url in capped[0].getMessage()
    assert "taking 64" in capped[0].getMessage()


@pytest.mark.parametrize(
    ("page", "slots"),
    [
        ("vllm:num_requests_running 1e30\nvllm:num_requests_waiting 1\n", 64),
        (
            "".join(
                f'vllm:num_requests_running{{model_name="m{i}"}} 2\n'
                f'vllm:num_requests_waiting{{model_name="m{i}"}} 1\n'
                for i in range(500)
            ),
            2,
        ),
    ],
    ids=["1e30", "500-models"],
)
async def test_vllm_figures_are_capped_and_models_not_added_up(
    vllm_page_server: PageServer, page: str, slots: int
) -> None:
    url = await vllm_page_server(page)
    async with OpenAIClient("sim-model", base_url=url) as client:
        assert await client.discover_limits() == slots
        assert client.stats.concurrency_limit == slots


@pytest.mark.parametrize("slots", [1, 3, 6])
async def test_llamacpp_total_slots_become_the_limit(
    simulated_server_factory: ServerFactory, slots: int
) -> None:
    server = await simulated_server_factory(parallel=slots, introspection="llama.cpp", latency=0.02)
    async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
        assert client.max_workers == 4  # the profile's, until the server is asked
        await run_concurrent(client.generate_answer, PROMPTS, progress_bar=False)
        assert client.max_workers == slots
        assert client.stats.concurrency_limit == slots
    assert server.stats.completed == len(PROMPTS)
    assert server.stats.by_path["/props"] == 1  # once for all callers
    assert server.stats.peak_in_flight == slots
    assert server.stats.peak_waiting == 0  # nothing queued at the server


async def test_concurrent_first_requests_wait_for_one_question(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=2, introspection="llama.cpp", latency=0.02)
    async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
        await asyncio.gather(*(client.generate_answer(p) for p in PROMPTS))
    assert server.stats.by_path["/props"] == 1
    assert server.stats.peak_in_flight == 2
    assert server.stats.peak_waiting == 0


async def test_run_concurrent_sizes_its_workers_to_the_server(
    simulated_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await simulated_server_factory(parallel=7, introspection="llama.cpp", latency=0.01)
    caplog.set_level(logging.DEBUG, logger="llmclient")
    async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
        await run_concurrent(client.generate_answer, PROMPTS, progress_bar=False)
    started = [r.getMessage() for r in caplog.records if "starting" in r.getMessage()]
    assert started == ["processing: starting 7 workers, total 24"]
    told = [r.getMessage() for r in caplog.records if "from the server" in r.getMessage()]
    assert told == [
        f"{server.openai_base_url}: max_concurrent 7, from the server (llama.cpp "
        "/props total_slots)"
    ]


async def test_vllm_metrics_while_requests_wait(simulated_server_factory: ServerFactory) -> None:
    """A busy vLLM says how many it runs at once: the running count while others wait."""
    server = await simulated_server_factory(parallel=3, introspection="vllm", latency=0.5)
    async with OpenAIClient(
        "sim-model", base_url=server.openai_base_url, max_concurrent=8, share_limits=False
    ) as busy:
        load = [asyncio.create_task(busy.generate_answer(f"busy{i}")) for i in range(8)]
        while server.stats.waiting < 5:  # noqa: ASYNC110 (the server's queue has no event)
            await asyncio.sleep(0.01)
        async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
            found = await client.server_capacity()
        await asyncio.gather(*load)
    assert found is not None and found.slots == 3
    assert "waiting" in found.source


async def test_idle_vllm_starts_at_its_default_batch_capped(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=4, introspection="vllm", latency=0.01)
    async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
        assert await client.discover_limits() == 64
        await client.generate_answer("x")
        assert client.stats.concurrency_limit == 64
    assert server.stats.by_path["/props"] == 1  # llama.cpp's page first: not found
    assert server.stats.by_path["/metrics"] == 1


async def test_a_server_that_does_not_say_keeps_the_profile_default(
    simulated_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await simulated_server_factory(latency=0.01)
    caplog.set_level(logging.INFO, logger="llmclient")
    async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
        assert await client.server_capacity() is None
        await run_concurrent(client.generate_answer, PROMPTS, progress_bar=False)
        assert client.max_workers == 4
    assert server.stats.peak_in_flight == 4
    assert any("did not say" in r.getMessage() for r in caplog.records)


async def test_an_unreachable_server_is_not_asked_twice_and_the_request_fails_as_usual() -> None:
    async with OpenAIClient(
        "sim-model", base_url="http://127.0.0.1:9/v1", max_attempts=1
    ) as client:
        with pytest.raises(Exception, match=r"127\.0\.0\.1:9"):
            await client.generate_answer("x")
        endpoint = client._admission.latest()
        assert endpoint is not None and not isinstance(endpoint, PoolDispatcher)
        assert endpoint.discovered is None
        assert endpoint.concurrency_limit == 4


@pytest.mark.parametrize(
    ("options", "env"),
    [
        ({"max_concurrent": 2}, {}),
        ({}, {"LLMCLIENT_OPENAI_MAX_CONCURRENT": "2"}),
        ({}, {"LLMCLIENT_MAX_CONCURRENT": "2"}),
    ],
)
async def test_a_given_limit_is_not_replaced(
    simulated_server_factory: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, int],
    env: dict[str, str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = await simulated_server_factory(parallel=6, introspection="llama.cpp", latency=0.01)
    async with OpenAIClient("sim-model", base_url=server.openai_base_url, **options) as client:
        await run_concurrent(client.generate_answer, PROMPTS, progress_bar=False)
        assert client.max_workers == 2
    assert server.stats.by_path["/props"] == 0
    assert server.stats.peak_in_flight == 2


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_discover_limits_off(
    simulated_server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    server = await simulated_server_factory(parallel=6, introspection="llama.cpp", latency=0.01)
    options = {"discover_limits": False} if how == "argument" else {}
    if how == "environment":
        monkeypatch.setenv("LLMCLIENT_DISCOVER_LIMITS", "false")
    async with OpenAIClient("sim-model", base_url=server.openai_base_url, **options) as client:
        await run_concurrent(client.generate_answer, PROMPTS, progress_bar=False)
    assert server.stats.by_path["/props"] == 0
    assert server.stats.peak_in_flight == 4


def test_bad_discover_limits_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCLIENT_DISCOVER_LIMITS", "perhaps")
    with pytest.raises(Exception, match="LLMCLIENT_DISCOVER_LIMITS='perhaps'"):
        OpenAIClient("sim-model", base_url="http://127.0.0.1:9/v1")


async def test_auto_starts_from_the_servers_figure(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=5, introspection="llama.cpp", latency=0.01)
    async with OpenAIClient(
        "sim-model", base_url=server.openai_base_url, max_concurrent="auto"
    ) as client:
        await client.generate_answer("x")
        endpoint = client._admission.latest()
        assert isinstance(endpoint, object) and not isinstance(endpoint, PoolDispatcher)
        assert endpoint is not None
        assert isinstance(endpoint.limit, LatencyLimit)
        assert endpoint.discovered == ServerCapacity(5, "llama.cpp /props total_slots")
        assert endpoint.limit.limit >= 4  # started at 5; one sample may step it
        assert client.max_workers == client.profile.adaptive_max


async def test_a_later_client_with_a_lower_limit_still_lowers_it(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=6, introspection="llama.cpp", latency=0.02)
    url = server.openai_base_url
    async with OpenAIClient("sim-model", base_url=url) as first:
        await first.generate_answer("x")
        assert first.stats.concurrency_limit == 6
        async with OpenAIClient("sim-model", base_url=url, max_concurrent=2) as second:
            await asyncio.gather(
                run_concurrent(first.generate_answer, PROMPTS, progress_bar=False),
                run_concurrent(second.generate_answer, PROMPTS, progress_bar=False),
            )
    assert server.stats.peak_in_flight == 2


async def test_a_given_limit_caps_what_a_later_default_client_discovers(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=6, introspection="llama.cpp", latency=0.02)
    url = server.openai_base_url
    async with (
        OpenAIClient("sim-model", base_url=url, max_concurrent=3) as given,
        OpenAIClient("sim-model", base_url=url) as default,
    ):
        await asyncio.gather(
            run_concurrent(given.generate_answer, PROMPTS, progress_bar=False),
            run_concurrent(default.generate_answer, PROMPTS, progress_bar=False),
        )
    assert server.stats.by_path["/props"] == 0  # the endpoint's limit was given
    assert server.stats.peak_in_flight == 3


async def test_each_server_of_a_pool_says_its_own(
    simulated_server_factory: ServerFactory,
) -> None:
    one = await simulated_server_factory(parallel=1, introspection="llama.cpp", latency=0.02)
    three = await simulated_server_factory(parallel=3, introspection="llama.cpp", latency=0.02)
    silent = await simulated_server_factory(parallel=2, latency=0.02)
    pool = EndpointPool(
        {one.openai_base_url: None, three.openai_base_url: None, silent.openai_base_url: 2}
    )
    async with OpenAIClient("sim-model", base_url=pool) as client:
        assert await client.discover_limits() == 1 + 3 + 2
        await run_concurrent(client.generate_answer, PROMPTS * 2, progress_bar=False)
        limits = {url: s.concurrency_limit for url, s in client.endpoint_stats.items()}
    assert limits == {one.openai_base_url: 1, three.openai_base_url: 3, silent.openai_base_url: 2}
    assert (one.stats.peak_in_flight, three.stats.peak_in_flight) == (1, 3)
    assert silent.stats.by_path["/props"] == 0  # its limit was given
    assert one.stats.peak_waiting == three.stats.peak_waiting == 0


async def test_ollama_takes_its_figure_from_ollama_num_parallel(
    simulated_server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ollama has no page that says; OLLAMA_NUM_PARALLEL is where it is known."""
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "3")
    server = await simulated_server_factory(parallel=3, latency=0.02)
    async with OllamaClient("sim-model", host=server.url) as client:
        assert await client.server_capacity() is None
        assert client.settings.sources["max_concurrent"] == "env OLLAMA_NUM_PARALLEL"
        await run_concurrent(client.generate_answer, PROMPTS, progress_bar=False)
    assert server.stats.peak_in_flight == 3
    assert server.stats.requests == len(PROMPTS)  # nothing else was asked


async def test_the_cloud_is_not_asked() -> None:
    async with OpenAIClient(
        "gpt-x", base_url="https://api.openai.com/v1", api_key="sk-test"
    ) as client:
        assert client._capacity_question(client.settings.base_url) is None
        assert await client.server_capacity() is None  # no request: loopback-only tests


async def test_a_provider_overriding_the_old_capacity_probe_name_is_still_asked(
    simulated_server_factory: ServerFactory,
) -> None:
    """`_capacity_probe` was the contract method's name: an override of it still answers."""
    server = await simulated_server_factory(parallel=2, latency=0.02)
    capacity = ServerCapacity(3, "override")

    async def ask() -> ServerCapacity:
        return capacity

    class OldProvider(OllamaClient):
        def _capacity_probe(self, url: str) -> Callable[[], Awaitable[ServerCapacity]]:
            return ask

    async with OldProvider("sim-model", host=server.url) as client:
        assert client.asks_server()
        assert await client.server_capacity() is capacity


async def test_redis_limits_take_the_servers_figure(
    simulated_server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    server = await simulated_server_factory(parallel=2, introspection="llama.cpp", latency=0.02)
    async with OpenAIClient(
        "sim-model", base_url=server.openai_base_url, limits=redis_server.url
    ) as client:
        await run_concurrent(client.generate_answer, PROMPTS, progress_bar=False)
        assert client.max_workers == 2
    assert server.stats.peak_in_flight == 2
    assert server.stats.peak_waiting == 0


async def max_concurrent_row(*urls: str, env: dict[str, str] | None = None) -> str:
    """The `max_concurrent` row of `llmclient config` for OpenAI-compatible `urls`."""
    args = [arg for url in urls for arg in ("--base-url", url)]
    result = await run_cli("config", "--provider", "openai", *args, env=env)
    assert result.code == 0, result
    return next(line for line in result.out.splitlines() if line.startswith("max_concurrent"))


async def test_config_shows_the_servers_figure_as_the_source(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=3, introspection="llama.cpp")
    row = await max_concurrent_row(server.openai_base_url)
    assert row.split()[1] == "3"
    assert "server: llama.cpp /props total_slots" in row


async def test_config_says_when_the_server_does_not(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory()
    row = await max_concurrent_row(server.openai_base_url)
    assert row.split()[1] == "4"
    assert "did not say" in row


async def test_simulated_introspection_pages_are_not_inference() -> None:
    async with SimulatedServer(parallel=2, introspection="llama.cpp") as server:
        async with OpenAIClient("sim-model", base_url=server.openai_base_url) as client:
            assert await client.server_capacity() == ServerCapacity(
                2, "llama.cpp /props total_slots"
            )
        assert server.stats.completed == 0
    with pytest.raises(ValueError, match="introspection must be None or one of"):
        SimulatedServer(introspection="tgi")


async def test_config_shows_each_pool_servers_figure(
    simulated_server_factory: ServerFactory,
) -> None:
    two = await simulated_server_factory(parallel=2, introspection="llama.cpp")
    five = await simulated_server_factory(parallel=5, introspection="llama.cpp")
    row = await max_concurrent_row(two.openai_base_url, five.openai_base_url)
    assert row.split()[1:3] == ["2,", "5"]
    assert f"llama.cpp /props total_slots at {five.openai_base_url}" in row


async def test_config_does_not_ask_when_the_limit_is_given(
    simulated_server_factory: ServerFactory,
) -> None:
    server = await simulated_server_factory(parallel=3, introspection="llama.cpp")
    env = {"LLMCLIENT_OPENAI_MAX_CONCURRENT": "7"}
    row = await max_concurrent_row(server.openai_base_url, env=env)
    assert row.split()[1] == "7" and "env LLMCLIENT_OPENAI_MAX_CONCURRENT" in row
    assert server.stats.requests == 0


def test_asks_server_says_whether_a_request_asks_first() -> None:
    """The rule the first request follows: a default or "auto" limit asks a local server;
    a limit the user gave, a pool server's own limit and the cloud ask nothing."""
    local = "http://127.0.0.1:9/v1"
    assert OpenAIClient("m", base_url=local).asks_server()
    assert OpenAIClient("m", base_url=local, max_concurrent="auto").asks_server(local)
    assert not OpenAIClient("m", base_url=local, max_concurrent=3).asks_server()
    pool = OpenAIClient("m", base_url=EndpointPool({local: 2, "http://127.0.0.1:8/v1": None}))
    assert not pool.asks_server(local)
    assert pool.asks_server("http://127.0.0.1:8/v1")
    cloud = OpenAIClient("gpt-x", base_url="https://api.openai.com/v1", api_key="sk-test")
    assert not cloud.asks_server()
