"""`run_concurrent` and `iterate_concurrent` over a client's methods, through the simulated
server: the client's own limit bounds the calls."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Awaitable, Callable, Iterator

import pytest

from llmclient import ConcurrencyProfile, ConfigurationError, OllamaClient
from llmclient.fanout import HasWorkerLimit
from llmclient.mapping import client_workers, iterate_concurrent, run_concurrent
from llmclient.testing import SimulatedServer
from tests.conftest import FAST_RETRY

Factory = Callable[..., Awaitable[SimulatedServer]]


def client(server: SimulatedServer, **options: object) -> OllamaClient:
    profile = ConcurrencyProfile(retry=FAST_RETRY.model_copy(update={"max_attempts": 1}))
    return OllamaClient("sim-model", host=server.url, profile=profile, **options)  # type: ignore[arg-type]


async def test_run_concurrent_keeps_order_and_the_client_limit(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(parallel=16, latency=0.005, token_latency=0.002)
    prompts = [" ".join(["w"] * (i % 7 + 1)) + f" #{i}" for i in range(100)]
    async with client(server, max_concurrent=3) as llm:
        answers = await run_concurrent(llm.generate_answer, prompts)
    assert answers == [f"Simulated reply to: {p}" for p in prompts]
    assert server.stats.peak_in_flight == 3


async def test_run_concurrent_passes_params_and_collects_errors(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(latency=0.001)
    async with client(server, max_concurrent=1) as llm:
        server.inject("401")
        one_token = functools.partial(llm.generate_answer, max_tokens=1)
        results = await run_concurrent(one_token, ["a b c", "d e f"], return_exceptions=True)
        assert isinstance(results[0], Exception)
        assert results[1] == "Simulated"
        warm = functools.partial(llm.generate_answer, temperature="warm")
        with pytest.raises(ConfigurationError, match="temperature"):
            await run_concurrent(warm, ["x"])
    assert server.stats.requests == 2


async def test_iterate_concurrent_yields_each_index_once_in_completion_order(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(parallel=8, latency=0.001, token_latency=0.01)
    prompts = [" ".join(["w"] * (12 - i)) for i in range(12)]  # later prompts answer faster
    async with client(server, max_concurrent=8) as llm:
        pairs = iterate_concurrent(llm.generate_answer, prompts)
        seen = [(i, answer) async for i, answer in pairs]
    assert sorted(i for i, _ in seen) == list(range(12))
    assert all(answer == f"Simulated reply to: {prompts[i]}" for i, answer in seen)
    assert [i for i, _ in seen][:8] != list(range(8))  # not input order


async def test_leaving_iterate_concurrent_early_cancels_the_rest(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.05)
    async with client(server, max_concurrent=4) as llm:
        pulled = 0

        def prompts() -> Iterator[str]:
            nonlocal pulled
            for i in range(10_000):
                pulled += 1
                yield f"q{i}"

        pairs = iterate_concurrent(llm.generate_answer, prompts())
        async with contextlib.aclosing(pairs) as answers:
            async for _index, _answer in answers:
                break
        assert llm.stats.in_flight == 0
        assert pulled < 50  # lazily consumed: a pool's worth, not the whole generator


async def test_iterate_concurrent_raises_first_error_or_yields_it() -> None:
    async def half(x: int) -> float:
        await asyncio.sleep(0.001 * x)
        if x == 3:
            raise ValueError("three")
        return x / 2

    with pytest.raises(ValueError, match="three"):
        async for _ in iterate_concurrent(half, range(6), max_concurrent=2):
            pass
    outcomes = dict(
        [pair async for pair in iterate_concurrent(half, range(6), return_exceptions=True)]
    )
    assert isinstance(outcomes.pop(3), ValueError)
    assert outcomes == {0: 0.0, 1: 0.5, 2: 1.0, 4: 2.0, 5: 2.5}


async def test_iterate_concurrent_over_an_async_iterable() -> None:
    async def source() -> object:
        for i in range(5):
            yield i

    async def square(x: int) -> int:
        return x * x

    pairs = [pair async for pair in iterate_concurrent(square, source())]  # type: ignore[arg-type]
    assert sorted(pairs) == [(i, i * i) for i in range(5)]


async def test_a_client_method_sizes_the_pool_to_the_client(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(parallel=8, latency=0.05)
    async with client(server, max_concurrent=3) as llm:
        pulled = 0

        def prompts() -> Iterator[str]:
            nonlocal pulled
            for i in range(1000):
                pulled += 1
                yield f"q{i}"

        short = functools.partial(llm.generate_answer, max_tokens=1)
        async with contextlib.aclosing(iterate_concurrent(short, prompts())) as pairs:
            async for _ in pairs:
                break
        # 3 workers pulled their items (plus one each after the first answers), not 256.
        assert pulled <= 3 * 2
    assert client_workers(llm.generate_answer) == 3
    assert client_workers(short) == 3
    assert client_workers(len) is None


class Sized:
    """Not a client: any object with `max_workers` and `discover_limits()` sizes the pool."""

    def __init__(self, before: int, after: int) -> None:
        self.max_workers = before
        self.after = after
        self.active = self.peak = 0

    async def discover_limits(self) -> int:
        self.max_workers = self.after
        return self.after

    async def work(self, x: int) -> int:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.001)
        self.active -= 1
        return x


async def test_the_pool_is_sized_by_the_has_worker_limit_protocol(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory()
    async with client(server, max_concurrent=3) as llm:
        assert isinstance(llm, HasWorkerLimit)
    owner = Sized(before=50, after=4)
    assert isinstance(owner, HasWorkerLimit)
    assert await run_concurrent(owner.work, range(40), progress_bar=False) == list(range(40))
    assert owner.peak == 4  # sized again to what discover_limits() returned
    assert client_workers(functools.partial(owner.work)) == 4


def workers_running() -> int:
    """The pool's worker tasks alive in this event loop."""
    return sum(1 for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "_Pool._worker")  # type: ignore[union-attr]


async def test_a_huge_client_limit_starts_no_more_workers_than_items_pulled(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.001)
    async with client(server, max_concurrent=10**6) as llm:
        assert llm.max_workers == 10**6
        workers_at_pull: list[tuple[int, int]] = []

        def prompts() -> Iterator[str]:
            for i in range(50):
                workers_at_pull.append((i, workers_running()))
                yield f"q{i}"

        short = functools.partial(llm.generate_answer, max_tokens=1)
        pairs = [pair async for pair in iterate_concurrent(short, prompts())]
        assert sorted(i for i, _ in pairs) == list(range(50))
        assert await run_concurrent(short, prompts(), progress_bar=False) == ["Simulated"] * 50
    assert len(workers_at_pull) == 100
    # Item i is pulled by one of the workers started so far: one, then one more per item pulled.
    assert all(workers <= i + 1 for i, workers in workers_at_pull), workers_at_pull


async def slow_round_then_short(
    server: SimulatedServer, progress: bool | Callable[..., object]
) -> list[str]:
    """400 answers, 4 at a time: 4 slow ones first (as while a model loads), then short ones."""
    async with client(server, max_concurrent=4) as llm:

        async def ask(i: int) -> str:
            if i < 4:
                return await llm.generate_answer(" ".join(["w"] * 40), max_tokens=40)
            return await llm.generate_answer(f"q{i}", max_tokens=1)

        return await run_concurrent(ask, range(400), progress_bar=progress, max_concurrent=4)


# At least 1.5 s of completions after the slow round, so updates every 0.1 s are well over
# 10. The stride guessed from the slow round used to freeze the display until the end.


async def test_a_progress_callback_keeps_moving_after_a_slow_first_round(
    simulated_server_factory: Factory,
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.01, token_latency=0.005)
    fractions: list[float | tuple[int, None]] = []

    def progress(fraction: float | tuple[int, None], /, *, desc: str) -> None:
        fractions.append(fraction)

    assert len(await slow_round_then_short(server, progress)) == 400
    intermediate = [f for f in fractions if isinstance(f, float) and 0 < f < 1]
    assert len(intermediate) >= 10, fractions
    assert intermediate == sorted(intermediate) and fractions[-1] == 1.0


async def test_the_progress_bar_keeps_moving_after_a_slow_first_round(
    simulated_server_factory: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await simulated_server_factory(parallel=4, latency=0.01, token_latency=0.005)
    assert len(await slow_round_then_short(server, True)) == 400
    bar = capsys.readouterr().err
    shown = {int(n) for n in re.findall(r"\b(\d+)/400\b", bar)}
    assert len(shown - {0, 400}) >= 10, bar
