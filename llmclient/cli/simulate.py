"""`llmclient simulate`: the simulated Ollama/OpenAI server in the foreground, until Ctrl-C.

Lets users try a pipeline without a GPU: slots, a queue (unbounded, as Ollama for a loaded
model, or bounded with 503s), latency, rpm and random faults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from llmclient.cli._common import (
    CommandError,
    UsageError,
    add_verbose,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from llmclient.testing import Fault, SimulatedServer

_FAULTS = ", ".join(f.value for f in Fault)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `simulate`."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--parallel",
        type=positive_int,
        default=4,
        help="slots serving at once (default: %(default)s)",
    )
    parser.add_argument(
        "--max-queue",
        type=non_negative_int,
        default=None,
        help="requests that may wait for a slot, beyond which the answer is 503 server busy, "
        "as Ollama while a model loads (OLLAMA_MAX_QUEUE, 512 there) or before 0.11.5 "
        "(default: no bound, as Ollama for a loaded model)",
    )
    parser.add_argument(
        "--latency",
        type=non_negative_float,
        default=0.05,
        help="seconds per request (default: %(default)s)",
    )
    parser.add_argument(
        "--token-latency",
        type=non_negative_float,
        default=0.0,
        help="extra seconds per generated token",
    )
    parser.add_argument(
        "--rpm", type=positive_int, help="requests per minute before 429 (default: no limit)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="KIND=RATE",
        help="answer this share of requests with a fault, e.g. 500=0.02 or drop=0.01 "
        f"(kinds: {_FAULTS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults")
    add_verbose(parser)


def command(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then print what was served."""
    faults = dict(args.fault)
    if sum(faults.values()) > 1:
        raise UsageError("the --fault rates add up to more than 1")
    server = SimulatedServer(
        host=args.host,
        port=args.port,
        parallel=args.parallel,
        max_queue=args.max_queue,
        latency=args.latency,
        token_latency=args.token_latency,
        rpm=args.rpm,
        fault_rates=faults,
        seed=args.seed,
    )
    asyncio.run(_serve(server, args))
    return 0


async def _serve(server: SimulatedServer, args: argparse.Namespace) -> None:
    try:
        await server.start()
    except OSError as error:
        raise CommandError(
            f"{args.host}:{args.port}",
            f"cannot listen ({error.strerror or error})",
            "choose another --port, or stop the process using it",
        ) from None
    _announce(server, args)
    await _until_stopped()
    await server.stop()
    stats = server.stats
    print(
        f"stopped: {stats.requests} requests, {stats.completed} answered, "
        f"peak {stats.peak_in_flight} in flight and {stats.peak_waiting} queued",
        flush=True,
    )


def _announce(server: SimulatedServer, args: argparse.Namespace) -> None:
    faults = ", ".join(f"{kind}={rate:g}" for kind, rate in args.fault) or "none"
    print(
        f"simulated LLM server (no real model) listening on {server.url}\n"
        f"  {args.parallel} slots, queue {args.max_queue or 'unbounded'}, "
        f"{args.latency:g}s per request "
        f"+ {args.token_latency:g}s per token, rpm {args.rpm or 'unlimited'}, faults: {faults}\n"
        f"point your code at it with:\n"
        f"  export OLLAMA_HOST={server.url}\n"
        f"  export OPENAI_BASE_URL={server.openai_base_url}\n"
        f"any model name works; press Ctrl-C to stop",
        flush=True,
    )


async def _until_stopped() -> None:
    """Wait for SIGINT or SIGTERM (or Ctrl-C where signal handlers are not supported)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _fault(text: str) -> tuple[str, float]:
    kind, _, rate = text.partition("=")
    if kind not in {f.value for f in Fault}:
        raise argparse.ArgumentTypeError(f"unknown fault {kind!r} (kinds: {_FAULTS})")
    try:
        value = float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be a number 0..1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be between 0 and 1")
    return kind, value
