"""`llmclient demo`: the original failure and its fix, side by side, on a simulated Ollama.

Two cases, each row against a fresh server and each sending every request at once with
`asyncio.gather`: (1) a warm model, where Ollama (since 0.11.5) makes requests beyond its slots
wait without bound, so the raw `ollama` SDK's requests queue at the server and, with a timeout,
fail; (2) a bounded queue (`OLLAMA_MAX_QUEUE`: while a model loads, or older servers), where the
overflow is refused with 503. `OllamaClient` runs the same workload in both.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import textwrap
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from llmclient.cli._common import add_verbose, milliseconds, positive_int, table
from llmclient.testing import SimulatedServer

SLOTS, QUEUE, LATENCY, TIMEOUT = 4, 16, 0.05, 0.5
POOL = 100  # httpx's default connection limit, which the ollama SDK keeps
MODEL = "sim-model"
HEADERS = (
    "variant",
    "requests",
    "failed",
    "failed with",
    "wall s",
    "p50 ms",
    "p95 ms",
    "peak in flight",
    "peak queued",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one variant saw from the client side."""

    failures: Counter[str]  # error kind -> count
    wall_s: float
    p50_s: float | None  # time on the wire of answered requests
    p95_s: float | None


Variant = Callable[[str, list[str]], Awaitable[Outcome]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `demo`."""
    parser.add_argument(
        "--requests",
        type=positive_int,
        default=120,
        metavar="N",
        help="requests per row (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=TIMEOUT,
        metavar="S",
        help="the clients' timeout in the warm-model case, in seconds (default: %(default)g)",
    )
    add_verbose(parser)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def command(args: argparse.Namespace) -> int:
    """Run both cases and print a table for each and what it means."""
    count, timeout = args.requests, args.timeout
    t = f"{timeout:g}"
    on_wire = min(count, POOL)
    values = {
        "count": count,
        "slots": SLOTS,
        "queue": QUEUE,
        "ms": round(LATENCY * 1000),
        "timeout": t,
        "times": f"{timeout / LATENCY:g}",
        "answer_s": f"{60 * LATENCY / timeout:.3g}",
        "pool": POOL,
        "on_wire": on_wire,
        "drain": f"{on_wire / SLOTS * LATENCY:.3g}",
    }
    warm: dict[str, Variant] = {
        "raw ollama SDK, no timeout": _raw(None),
        f"raw ollama SDK, timeout={t}": _raw(timeout),
        f"OllamaClient(max_concurrent={SLOTS}, timeout={t})": _with_client(
            {"max_concurrent": SLOTS, "timeout": timeout}
        ),
        f'OllamaClient(max_concurrent="auto", timeout={t})': _with_client(
            {"max_concurrent": "auto", "timeout": timeout}
        ),
    }
    bounded: dict[str, Variant] = {
        "raw ollama SDK": _raw(None),
        f"OllamaClient(max_concurrent={SLOTS})": _with_client({"max_concurrent": SLOTS}),
        'OllamaClient(max_concurrent="auto")': _with_client({"max_concurrent": "auto"}),
    }
    print(_INTRO.format(**values), flush=True)
    print(_WARM_TITLE.format(**values), flush=True)
    print(table(HEADERS, asyncio.run(_run_case(count, None, warm))) + "\n", flush=True)
    _say(_WARM, values)
    print(_BOUNDED_TITLE.format(**values), flush=True)
    print(table(HEADERS, asyncio.run(_run_case(count, QUEUE, bounded))) + "\n", flush=True)
    _say(_BOUNDED, values)
    print(_REAL)
    return 0


def _say(text: str, values: dict[str, object]) -> None:
    """Print `text` filled in with `values`, each paragraph wrapped and followed by a blank line."""
    for paragraph in text.strip().split("\n\n"):
        print(textwrap.fill(" ".join(paragraph.format(**values).split()), width=96) + "\n")


async def _run_case(
    count: int, max_queue: int | None, variants: dict[str, Variant]
) -> list[tuple[object, ...]]:
    prompts = [f"Question {i}: what is {i} + {i}?" for i in range(count)]
    rows: list[tuple[object, ...]] = []
    for name, variant in variants.items():
        server = SimulatedServer(parallel=SLOTS, max_queue=max_queue, latency=LATENCY)
        async with server:
            outcome = await variant(server.url, prompts)
            stats = server.stats
        kinds = ", ".join(kind for kind, _ in outcome.failures.most_common()) or None
        p50, p95 = milliseconds(outcome.p50_s), milliseconds(outcome.p95_s)
        row = (name, count, outcome.failures.total(), kinds, outcome.wall_s, p50, p95)
        rows.append((*row, stats.peak_in_flight, stats.peak_waiting))
    return rows


def _raw(timeout: float | None) -> Variant:
    """The original `run_concurrent`: every request at once, straight to the server."""

    async def variant(url: str, prompts: list[str]) -> Outcome:
        import httpx  # here, so that `llmclient --help` loads neither the SDK nor httpx
        import ollama

        on_wire: list[float] = []

        async def ask(sdk: ollama.AsyncClient, prompt: str) -> None:
            answer = await sdk.chat(MODEL, [{"role": "user", "content": prompt}])
            # Ollama's own measure: from the request's arrival (its wait for a slot included)
            on_wire.append((answer.total_duration or 0) / 1e9)

        def kind(error: BaseException) -> str:
            if isinstance(error, httpx.TimeoutException):
                return "timeout"
            if isinstance(error, ollama.ResponseError):
                return str(error.status_code)
            return type(error).__name__

        started = time.monotonic()
        async with ollama.AsyncClient(host=url, timeout=timeout) as sdk:
            results = await asyncio.gather(*(ask(sdk, p) for p in prompts), return_exceptions=True)
        wall = time.monotonic() - started
        failures = Counter(kind(r) for r in results if isinstance(r, BaseException))
        on_wire.sort()
        return Outcome(failures, wall, _percentile(on_wire, 0.5), _percentile(on_wire, 0.95))

    return variant


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest rank, as `client.stats` computes its percentiles."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else None


def _with_client(options: dict[str, Any]) -> Variant:
    """The same naive fan-out, through an `OllamaClient` that owns the server's limits."""

    async def variant(url: str, prompts: list[str]) -> Outcome:
        from llmclient import LLMError, OllamaClient

        def kind(error: BaseException) -> str:
            return str(error.kind) if isinstance(error, LLMError) else type(error).__name__

        started = time.monotonic()
        async with OllamaClient(MODEL, host=url, **options) as client:
            results = await asyncio.gather(
                *(client.generate_answer(p) for p in prompts), return_exceptions=True
            )
            stats = client.stats
        failures = Counter(kind(r) for r in results if isinstance(r, BaseException))
        return Outcome(failures, time.monotonic() - started, stats.latency_p50, stats.latency_p95)

    return variant


_INTRO = """\
Simulated Ollama server (no model runs): {slots} slots (OLLAMA_NUM_PARALLEL={slots}),
{ms} ms a request. Every row sends {count} requests at once (asyncio.gather) to a fresh server.
"""

_WARM_TITLE = """\
1. Warm model: requests beyond the slots wait for one, without bound (Ollama >= 0.11.5).
   timeout={timeout} s is {times}x the service time (as a 60 s timeout is for {answer_s} s answers).
"""

_WARM = """
p50/p95: time on the wire of answered requests (raw SDK: Ollama's total_duration, from the
request's arrival, its wait for a slot included); peak in flight/queued: at the server.

The server answers {slots} at a time whoever sends: answering all {count} takes about as long in
every row. The raw SDK puts every request on the wire (up to httpx's {pool} connections), so each
waits at the server behind the others: latency grows toward {on_wire}/{slots} x the service time
({drain} s). With a timeout, those still waiting when it expires fail: "timeout", never a 503
(a warm Ollama queues, it does not refuse).

OllamaClient(max_concurrent={slots}) (what OLLAMA_NUM_PARALLEL={slots} in your environment gives;
unset, it is Ollama's default, 1) keeps {slots} on the wire and queues the rest itself, where its
timeout does not run: every request takes one service time (flat p50/p95), none times out, all
are answered.
"""

_BOUNDED_TITLE = """\
2. Bounded queue: at most {queue} requests wait (OLLAMA_MAX_QUEUE={queue}; the default is 512),
   as while a model loads, or on Ollama before 0.11.5. Beyond it: 503 "server busy".
"""

_BOUNDED = """
failed with 503: Ollama's "server busy" (its queue is full), which the raw SDK does not retry.
Unbounded fan-out overfills the server's queue: what does not fit is refused at once, what fits
waits in line. OllamaClient keeps {slots} requests on the wire (the server's slots), so nothing is
queued at the server and nothing refused. "auto" finds the slots from latency by itself; now and
then it tries one more, so a request may wait at the server (peak queued), but none is refused.
"""

_REAL = """\
This server was simulated. The same code runs against a real Ollama: start `ollama serve`, then
    OllamaClient("llama3.2")    # host from OLLAMA_HOST, default http://127.0.0.1:11434
and measure how many requests your server really serves at once with
    llmclient probe --provider ollama --model llama3.2"""
