"""llmclient against its peers: same simulated server, same workload, side by side.

    python benchmarks/run_all.py [--quick] [--scale N] [--only warm,bounded,...] [--no-write]

Needs the `bench` extra (`pip install -e '.[bench]'`: aiometer, langchain-openai, litellm,
matplotlib). Every peer runs in a child process of its own against a `SimulatedServer` in
another process (all on 127.0.0.1), so figures and failures are the peer's alone. Writes
docs/benchmarks.md (the tables) and docs/assets/bench-*.png (the plots) unless `--no-write`.

A peer that fails a scenario is shown failing, with its error; one that cannot take part says
why. Latency is measured at the server: from a request's arrival to the end of its answer, its
wait for a slot included (what a timeout measures).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llmclient.testing.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
MODEL = "sim-model"
MAX_TOKENS = 16


# --- scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One workload: the server, the requests, and what every peer is told about the server."""

    key: str
    title: str
    story: str
    n: int
    slots: int  # the server's parallel slots, and the limit every peer is given
    latency: float
    timeout: float
    max_queue: int | None = None
    rpm: int | None = None
    processes: int = 1
    peers_in_parallel: bool = False  # each peer with its own server, all at once (rpm: 60 s)

    @property
    def server(self) -> dict[str, Any]:
        return {
            "parallel": self.slots,
            "latency": self.latency,
            "max_queue": self.max_queue,
            "rpm": self.rpm,
        }

    @property
    def ideal(self) -> float:
        """Seconds the work takes at best: N / slots x latency, or the rpm windows it needs."""
        if self.rpm is None or self.n <= self.rpm:
            return self.n / self.slots * self.latency
        windows, rest = divmod(self.n - 1, self.rpm)
        return 60.0 * windows + (rest + 1) / self.slots * self.latency


def scenarios(quick: bool) -> list[Scenario]:
    n = 80 if quick else 200
    return [
        Scenario(
            "warm",
            "Warm Ollama: excess requests wait",
            "4 slots, 50 ms a request, unbounded wait queue (a loaded model on Ollama >= 0.11.5); "
            "timeout 0.5 s (10x the service time).",
            n=n,
            slots=4,
            latency=0.05,
            timeout=0.5,
        ),
        Scenario(
            "bounded",
            "Bounded queue: 503s",
            "4 slots, 50 ms a request, at most 16 waiting (`OLLAMA_MAX_QUEUE=16`: a model "
            "loading, or an older Ollama); timeout 5 s.",
            n=n,
            slots=4,
            latency=0.05,
            timeout=5.0,
            max_queue=16,
        ),
        Scenario(
            "rpm",
            "Rate-limited OpenAI-style server: 429s",
            "8 slots, 50 ms a request, 40 requests per sliding minute (429 with Retry-After "
            "beyond it); every peer is given the limit where it has a setting for it; timeout 5 s. "
            "Peers run at once, each against its own server, since this takes a minute.",
            n=25 if quick else 50,
            slots=8,
            latency=0.05,
            timeout=5.0,
            rpm=20 if quick else 40,
            peers_in_parallel=True,
        ),
        Scenario(
            "processes",
            "Four processes, one server",
            "4 processes share the work against one server of 4 slots, 50 ms a request, "
            "unbounded queue; every process is given the limit 4; timeout 0.5 s.",
            n=n,
            slots=4,
            latency=0.05,
            timeout=0.5,
            processes=4,
        ),
    ]


# --- peers (each runs in a child process) --------------------------------------------------


@dataclass(frozen=True)
class Work:
    base_url: str  # OpenAI-compatible base URL (…/v1)
    prompts: list[str]
    slots: int
    timeout: float
    rpm: int | None


class Unavailable(Exception):
    """The peer cannot take part on this branch or in this scenario."""


Outcomes = list[str | None]  # per item: None when answered, else the error
Trace = list[tuple[float, int]]


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0][:70] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _outcomes(results: Sequence[object]) -> Outcomes:
    return [_describe(r) if isinstance(r, BaseException) else None for r in results]


def _openai_sdk(work: Work) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=work.base_url, api_key="sk-bench", timeout=work.timeout)


async def _sdk_call(client: Any, prompt: str) -> str:
    reply = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS
    )
    return str(reply.choices[0].message.content)


async def peer_gather(work: Work) -> tuple[Outcomes, Trace]:
    """GraphGen's original run_concurrent: every request at once (openai SDK, its defaults)."""
    async with _openai_sdk(work) as client:
        calls = (_sdk_call(client, p) for p in work.prompts)
        return _outcomes(await asyncio.gather(*calls, return_exceptions=True)), []


async def peer_semaphore(work: Work) -> tuple[Outcomes, Trace]:
    """asyncio.Semaphore(slots) around each call; no rate limit."""
    semaphore = asyncio.Semaphore(work.slots)

    async def call(client: Any, prompt: str) -> str:
        async with semaphore:
            return await _sdk_call(client, prompt)

    async with _openai_sdk(work) as client:
        calls = (call(client, p) for p in work.prompts)
        return _outcomes(await asyncio.gather(*calls, return_exceptions=True)), []


async def peer_aiometer(work: Work) -> tuple[Outcomes, Trace]:
    """aiometer.run_all(max_at_once=slots, max_per_second=rpm / 60)."""
    import aiometer

    async def call(client: Any, prompt: str) -> str | BaseException:
        try:
            return await _sdk_call(client, prompt)
        except Exception as error:  # run_all would stop at the first one
            return error

    per_second = work.rpm / 60 if work.rpm else None
    async with _openai_sdk(work) as client:
        jobs = [functools.partial(call, client, p) for p in work.prompts]
        results = await aiometer.run_all(jobs, max_at_once=work.slots, max_per_second=per_second)
    return _outcomes(results), []


async def peer_langchain(work: Work) -> tuple[Outcomes, Trace]:
    """LangChain ChatOpenAI.abatch(max_concurrency=slots), InMemoryRateLimiter for rpm."""
    from langchain_core.rate_limiters import InMemoryRateLimiter
    from langchain_openai import ChatOpenAI

    limiter = None
    if work.rpm:
        limiter = InMemoryRateLimiter(
            requests_per_second=work.rpm / 60, check_every_n_seconds=0.05, max_bucket_size=work.rpm
        )
    llm = ChatOpenAI(
        model=MODEL,
        base_url=work.base_url,
        api_key="sk-bench",  # type: ignore[arg-type]
        timeout=work.timeout,
        max_tokens=MAX_TOKENS,  # type: ignore[call-arg]
        rate_limiter=limiter,
    )
    config: Any = {"max_concurrency": work.slots}
    results = await llm.abatch(work.prompts, config=config, return_exceptions=True)
    return _outcomes(results), []


async def peer_litellm(work: Work) -> tuple[Outcomes, Trace]:
    """LiteLLM Router with max_parallel_requests=slots (and rpm), asyncio.gather over it."""
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.callbacks = []
    litellm.success_callback = []
    litellm.failure_callback = []
    params: dict[str, Any] = {
        "model": f"openai/{MODEL}",
        "api_base": work.base_url,
        "api_key": "sk-bench",
        "max_parallel_requests": work.slots,
        "timeout": work.timeout,
    }
    if work.rpm:
        params["rpm"] = work.rpm
    router = Router(model_list=[{"model_name": "bench", "litellm_params": params}])
    messages = [[{"role": "user", "content": p}] for p in work.prompts]
    calls = (router.acompletion(model="bench", messages=m, max_tokens=MAX_TOKENS) for m in messages)
    return _outcomes(await asyncio.gather(*calls, return_exceptions=True)), []


async def _llmclient(
    work: Work, max_concurrent: int | str, **options: Any
) -> tuple[Outcomes, Trace]:
    from llmclient import OpenAIClient, run_concurrent

    trace: Trace = []
    async with OpenAIClient(
        MODEL,
        base_url=work.base_url,
        max_concurrent=max_concurrent,
        timeout=work.timeout,
        rpm=work.rpm,
        **options,
    ) as client:
        start = time.perf_counter()

        async def sample() -> None:
            while True:
                trace.append((time.perf_counter() - start, client.stats.concurrency_limit))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            answer = functools.partial(client.generate_answer, max_tokens=MAX_TOKENS)
            results = await run_concurrent(
                answer, work.prompts, return_exceptions=True, progress_bar=False
            )
        finally:
            sampler.cancel()
    return _outcomes(results), trace


async def peer_llmclient(work: Work) -> tuple[Outcomes, Trace]:
    """OpenAIClient(max_concurrent=slots, rpm=...) and run_concurrent."""
    return await _llmclient(work, work.slots)


async def peer_llmclient_auto(work: Work) -> tuple[Outcomes, Trace]:
    """OpenAIClient(max_concurrent="auto"): the limit learnt from latency."""
    return await _llmclient(work, "auto")


async def peer_llmclient_shared(work: Work) -> tuple[Outcomes, Trace]:
    """OpenAIClient(limits="redis://..."): one limit for every process (the Redis backend)."""
    try:
        import llmclient.limits.backends.redis  # noqa: F401
    except ImportError:
        raise Unavailable(
            "not available on this branch (llmclient.limits.backends.redis is missing)"
        ) from None
    url = os.environ.get("LLMCLIENT_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    return await _llmclient(work, work.slots, limits=url)


PEERS: dict[str, tuple[str, Callable[[Work], Awaitable[tuple[Outcomes, Trace]]]]] = {
    "gather": ("asyncio.gather, unbounded (original run_concurrent)", peer_gather),
    "semaphore": ("asyncio.Semaphore", peer_semaphore),
    "aiometer": ("aiometer.run_all", peer_aiometer),
    "langchain": ("LangChain ChatOpenAI.abatch", peer_langchain),
    "litellm": ("LiteLLM Router", peer_litellm),
    "llmclient": ("llmclient, fixed limit", peer_llmclient),
    "llmclient_auto": ('llmclient, max_concurrent="auto"', peer_llmclient_auto),
    "llmclient_shared": ("llmclient, shared limits (Redis)", peer_llmclient_shared),
}
SINGLE_PROCESS_PEERS = [p for p in PEERS if p != "llmclient_shared"]
# Imported before the clock starts, so no peer's import time counts as its work.
PREIMPORT = {
    "aiometer": ["aiometer"],
    "langchain": ["langchain_openai", "langchain_core.rate_limiters"],
    "litellm": ["litellm"],
    "llmclient": ["llmclient.clients.openai", "llmclient.fanout"],
    "llmclient_auto": ["llmclient.clients.openai", "llmclient.fanout"],
    "llmclient_shared": ["llmclient.clients.openai", "llmclient.fanout"],
}


def child(peer: str, spec: dict[str, Any]) -> None:
    """Run one peer's share of a scenario: "ready", wait for a line on stdin, then a JSON line."""
    work = Work(**spec)
    _, run = PEERS[peer]
    for module in ["openai", *PREIMPORT.get(peer, [])]:
        importlib.import_module(module)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    try:
        outcomes, trace = asyncio.run(run(work))
        result: dict[str, Any] = {"outcomes": outcomes, "trace": trace}
    except Unavailable as reason:
        result = {"unavailable": str(reason)}
    except Exception as error:  # the peer failed as a whole: shown, never dropped
        result = {"crashed": _describe(error)}
    result["wall"] = time.perf_counter() - start
    print(json.dumps(result), flush=True)


# --- the 1,000,000-item mapping scale ------------------------------------------------------


async def _noop(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


async def scale_gather(n: int, m: int) -> Sequence[object]:
    return await asyncio.gather(*(_noop(x) for x in range(n)))


async def scale_semaphore(n: int, m: int) -> Sequence[object]:
    semaphore = asyncio.Semaphore(m)

    async def guarded(x: int) -> int:
        async with semaphore:
            return await _noop(x)

    return await asyncio.gather(*(guarded(x) for x in range(n)))


async def scale_aiometer(n: int, m: int) -> Sequence[object]:
    import aiometer

    return await aiometer.run_all([functools.partial(_noop, x) for x in range(n)], max_at_once=m)


async def scale_langchain(n: int, m: int) -> Sequence[object]:
    from langchain_core.runnables import RunnableLambda

    return await RunnableLambda(_noop).abatch(list(range(n)), config={"max_concurrency": m})


async def scale_llmclient(n: int, m: int) -> Sequence[object]:
    from llmclient import run_concurrent

    return await run_concurrent(_noop, range(n), max_concurrent=m, progress_bar=False)


SCALE_PEERS: dict[str, Callable[[int, int], Awaitable[Sequence[object]]] | str] = {
    "gather": scale_gather,
    "semaphore": scale_semaphore,
    "aiometer": scale_aiometer,
    "langchain": scale_langchain,
    "litellm": "not applicable: LiteLLM has no helper for mapping work over items",
    "llmclient": scale_llmclient,
}


def scale_child(peer: str, n: int, m: int) -> None:
    """Map a no-op coroutine over range(n); print µs per item and peak MiB above baseline."""
    run = SCALE_PEERS[peer]
    assert callable(run)
    import llmclient.fanout  # noqa: F401  (the same baseline for every peer)

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    results = asyncio.run(run(n, m))
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ok = len(results) == n and (n == 0 or results[-1] == 2 * (n - 1))
    figures = {"us_per_item": elapsed / n * 1e6, "mib": (peak - baseline) / 1024, "ok": ok}
    print(json.dumps(figures), flush=True)


# --- the parent: run, tabulate, plot -------------------------------------------------------


@dataclass
class Row:
    peer: str
    label: str
    outcomes: Outcomes = field(default_factory=list)
    wall: float = 0.0
    server: dict[str, Any] = field(default_factory=dict)
    trace: Trace = field(default_factory=list)
    note: str = ""  # unavailable / crashed

    @property
    def answered(self) -> int:
        return sum(o is None for o in self.outcomes)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.answered

    @property
    def top_error(self) -> str:
        errors = collections.Counter(o for o in self.outcomes if o is not None)
        if not errors:
            return "-"
        text, count = errors.most_common(1)[0]
        return f"{count}x {text}"

    @property
    def latencies(self) -> list[float]:
        return [d for d, outcome in self.server.get("durations", []) if outcome == "done"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no download of LiteLLM's price list
    env["LITELLM_TELEMETRY"] = "False"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _launch(peer: str, spec: dict[str, Any]) -> tuple[subprocess.Popen[str], Any]:
    stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by _finish)
    cmd = [sys.executable, __file__, "--child", peer, json.dumps(spec)]
    process = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=_child_env(),
    )
    return process, stderr


def _finish(process: subprocess.Popen[str], stderr: Any, deadline: float) -> dict[str, Any]:
    with stderr:
        return _result(process, stderr, deadline)


def _result(process: subprocess.Popen[str], stderr: Any, deadline: float) -> dict[str, Any]:
    try:
        out, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return {"crashed": "did not finish in time (killed)"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        stderr.seek(0)
        tail = stderr.read().strip().splitlines()[-1:] or [f"exit code {process.returncode}"]
        return {"crashed": tail[0][:120]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_scenario(scenario: Scenario, peers: list[str], *, limit: float) -> list[Row]:
    """Run `peers` on `scenario`, one after another (or all at once for rpm); one Row each."""
    from _server import timed_server_process

    groups = [peers] if scenario.peers_in_parallel else [[p] for p in peers]
    rows: list[Row] = []
    for group in groups:
        with contextlib.ExitStack() as stack:
            servers = {
                p: stack.enter_context(timed_server_process(**scenario.server)) for p in group
            }
            children: dict[str, list[tuple[subprocess.Popen[str], Any]]] = {}
            for peer in group:
                children[peer] = []
                for part in range(scenario.processes):
                    spec = {
                        "base_url": servers[peer].url + "/v1",
                        "prompts": [
                            f"item {i}" for i in range(part, scenario.n, scenario.processes)
                        ],
                        "slots": scenario.slots,
                        "timeout": scenario.timeout,
                        "rpm": scenario.rpm,
                    }
                    children[peer].append(_launch(peer, spec))
            for process, _ in (c for cs in children.values() for c in cs):
                assert process.stdout is not None
                process.stdout.readline()  # "ready" (or EOF if it died: _finish reports it)
            for process, _ in (c for cs in children.values() for c in cs):
                with contextlib.suppress(BrokenPipeError):
                    assert process.stdin is not None
                    process.stdin.write("go\n")
                    process.stdin.flush()
            deadline = time.monotonic() + limit
            for peer in group:
                results = [_finish(p, err, deadline) for p, err in children[peer]]
                rows.append(_row(peer, results, servers[peer].report()))
        for row in rows[-len(group) :]:
            print(f"  {scenario.key:9} {row.label:52} {_summary(row, scenario)}", flush=True)
    return rows


def _row(peer: str, results: list[dict[str, Any]], server: dict[str, Any]) -> Row:
    row = Row(peer, PEERS[peer][0], server=server)
    notes = {r.get("unavailable") or r.get("crashed") for r in results} - {None}
    if notes:
        row.note = "; ".join(sorted(str(n) for n in notes))
    for result in results:
        row.outcomes += result.get("outcomes", [])
        row.wall = max(row.wall, result.get("wall", 0.0))
        row.trace += [tuple(point) for point in result.get("trace", [])]  # type: ignore[misc]
    return row


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _summary(row: Row, scenario: Scenario) -> str:
    if row.note and not row.outcomes:
        return row.note
    return (
        f"answered {row.answered}/{scenario.n}, {row.wall:.2f} s "
        f"({row.wall / scenario.ideal:.2f}x ideal), peak on wire {row.server.get('peak_on_wire')}"
    )


def table(scenario: Scenario, rows: list[Row]) -> str:
    """The Markdown table of one scenario."""
    rpm = scenario.rpm is not None
    head = ["peer", "answered", "failed", "most common error", "wall s", "x ideal"]
    head += ["achieved rpm"] if rpm else []
    head += ["p50 ms", "p95 ms", "peak on wire", "429", "503", "requests sent"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row.note and not row.outcomes:
            cells = [row.label, "-", "-", f"**{row.note}**"] + ["-"] * (len(head) - 4)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        statuses = row.server.get("statuses", {})
        error = row.top_error if not row.note else f"{row.note}; {row.top_error}"
        cells = [
            row.label,
            f"{row.answered}/{scenario.n}",
            str(row.failed),
            error.replace("|", "\\|"),
            f"{row.wall:.2f}",
            f"{row.wall / scenario.ideal:.2f}",
        ]
        if rpm:
            cells.append(f"{row.answered / row.wall * 60:.0f} (limit {scenario.rpm})")
        cells += [
            _ms(_pct(row.latencies, 0.5)),
            _ms(_pct(row.latencies, 0.95)),
            f"{row.server.get('peak_on_wire', '-')} (limit {scenario.slots})",
            str(statuses.get("429", 0)),
            str(statuses.get("503", 0)),
            str(row.server.get("requests", 0)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_scale(n: int, m: int, limit: float) -> list[tuple[str, str, str, str]]:
    """(peer, µs per item, peak MiB, note) for every scale peer, each in its own process."""
    rows = []
    for peer, run in SCALE_PEERS.items():
        if isinstance(run, str):
            rows.append((peer, "-", "-", run))
            print(f"  scale     {peer:52} {run}", flush=True)
            continue
        cmd = [sys.executable, __file__, "--scale-child", peer, str(n), str(m)]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=limit, env=_child_env(), check=False
            )
        except subprocess.TimeoutExpired:
            bound = limit / n * 1e6
            note = f"**failed: did not finish within {limit:.0f} s (over {bound:.0f} µs per item)**"
            rows.append((peer, "-", "-", note))
        else:
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
                rows.append((peer, "-", "-", f"**failed: {tail[0][:120]}**"))
            else:
                figures = json.loads(lines[-1])
                note = "" if figures["ok"] else "**wrong results**"
                rows.append(
                    (peer, f"{figures['us_per_item']:.2f}", f"{figures['mib']:.0f}", note or "-")
                )
        print(f"  scale     {peer:52} {rows[-1][1:]}", flush=True)
    return rows


def plots(results: dict[str, list[Row]], out: Path, single: set[str]) -> list[str]:
    """Latency per peer, failures per peer, the "auto" limit over time; the files written.

    The limit over time is drawn for the single-process scenarios (`single`) only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "warm" in results:
        rows = [r for r in results["warm"] if r.latencies]
        fig, ax = plt.subplots(figsize=(9, 4.5))
        ax.boxplot(
            [[x * 1000 for x in r.latencies] for r in rows], orientation="horizontal", whis=(5, 95)
        )
        ax.set_yticks(range(1, len(rows) + 1), [r.label for r in rows], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("time at the server per answered request, ms (log; whiskers 5-95%)")
        ax.set_title("Warm Ollama: latency per request")
        fig.tight_layout()
        fig.savefig(out / "bench-latency.png", dpi=100)
        plt.close(fig)
        written.append("bench-latency.png")
    keys = list(results)
    peers = list(dict.fromkeys(r.peer for rows in results.values() for r in rows))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(keys))
    for k, key in enumerate(keys):
        by_peer = {r.peer: r for r in results[key]}
        xs, ys = [], []
        for i, peer in enumerate(peers):
            row = by_peer.get(peer)
            if row is not None and row.outcomes:
                xs.append(i + k * width)
                ys.append(row.failed / len(row.outcomes) * 100)
        ax.bar(xs, ys, width=width, label=key)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(peers))], peers, fontsize=8, rotation=20)
    ax.set_ylabel("failed requests, % of the scenario")
    ax.set_title("Failures per peer and scenario")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bench-failures.png", dpi=100)
    plt.close(fig)
    written.append("bench-failures.png")
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for key, rows in results.items():
        for row in rows:
            if key in single and row.peer == "llmclient_auto" and row.trace:
                ts, limits = zip(*sorted(row.trace), strict=True)
                ax.step(ts, limits, where="post", label=key)
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel('limit ("auto")')
    ax.set_title('max_concurrent="auto": the limit over time (servers of 4 slots; rpm: 8)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bench-auto-limit.png", dpi=100)
    plt.close(fig)
    written.append("bench-auto-limit.png")
    return written


def _versions() -> str:
    names = ["llmclient", "openai", "aiometer", "langchain-openai", "litellm"]
    found = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def page(
    command: str,
    all_scenarios: list[Scenario],
    results: dict[str, list[Row]],
    scale: list[tuple[str, str, str, str]] | None,
    scale_n: int,
    images: list[str],
) -> str:
    """docs/benchmarks.md."""
    parts = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/run_all.py: edit that script, not this page. -->",
        "",
        "llmclient and its peers against the same simulated server (`llmclient.testing`, in its "
        "own process on 127.0.0.1), on the same workload, side by side. Reproduce with:",
        "",
        "```bash",
        "pip install -e '.[bench]'",
        "python benchmarks/run_all.py    # about 7 minutes on 2 cores; --quick: about 3",
        "```",
        "",
        f"This page: `{command}` on {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{_versions()}; {time.strftime('%Y-%m-%d', time.gmtime())}.",
        "",
        "Each peer runs in a child process of its own with its idiomatic settings: the openai "
        "SDK's defaults (2 retries) for `gather`, `Semaphore` and aiometer, LangChain's and "
        "LiteLLM's defaults, llmclient's `OpenAIClient`. Every peer is given the server's slots "
        "as its concurrency limit (the unbounded `gather` aside) and the timeout of the "
        "scenario. **x ideal** is the wall time over N / slots x latency (the rate-limited "
        "scenario: the rpm windows the work needs). **p50/p95** are the time at the server of "
        "the answered requests, from arrival to the end of the answer, the wait for a slot "
        "included: what a timeout measures. **peak on wire** counts requests being served or "
        "waiting at the server at once. A peer that failed is shown with its error.",
        "",
    ]
    for scenario in all_scenarios:
        if scenario.key not in results:
            continue
        parts += [
            f"## {scenario.title}",
            "",
            f"{scenario.story} {scenario.n} requests; ideal {scenario.ideal:.2f} s.",
            "",
            table(scenario, results[scenario.key]),
            "",
        ]
    if scale is not None:
        parts += [
            "## Mapping scale",
            "",
            f"{scale_n:,} items through each peer's mapping helper at a concurrency of 100: a "
            "no-op coroutine (`await asyncio.sleep(0)`), so what is measured is the helper's "
            "own cost. Peak MiB is the peak RSS above the baseline after importing the helper.",
            "",
            "| peer | µs per item | peak MiB | note |",
            "|---|---|---|---|",
            *(f"| {p} | {us} | {mib} | {note} |" for p, us, mib, note in scale),
            "",
        ]
    if images:
        parts += ["## Plots", ""]
        parts += [f"![{name}](assets/{name})" for name in images]
        parts += [""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and items")
    parser.add_argument("--scale", type=int, help="items for the mapping scale (1,000,000)")
    parser.add_argument(
        "--only", help="comma-separated scenarios: warm,bounded,rpm,processes,scale"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--scale-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return
    if args.scale_child:
        scale_child(args.scale_child[0], int(args.scale_child[1]), int(args.scale_child[2]))
        return

    all_scenarios = scenarios(args.quick)
    wanted = set(args.only.split(",")) if args.only else {s.key for s in all_scenarios} | {"scale"}
    unknown = wanted - {s.key for s in all_scenarios} - {"scale"}
    if unknown:
        parser.error(f"--only: unknown scenarios {', '.join(sorted(unknown))}")
    scale_n = args.scale or (100_000 if args.quick else 1_000_000)
    with contextlib.ExitStack() as stack:
        if "LLMCLIENT_BENCH_REDIS" not in os.environ and shutil.which("redis-server"):
            # The shared-limits peer needs a Redis: a private one, inherited by the children.
            os.environ["LLMCLIENT_BENCH_REDIS"] = stack.enter_context(RedisServer()).url
        run_suite(args, all_scenarios, wanted, scale_n)


def run_suite(
    args: argparse.Namespace, all_scenarios: list[Scenario], wanted: set[str], scale_n: int
) -> None:
    """Run the wanted scenarios and write the page."""
    started = time.monotonic()
    results: dict[str, list[Row]] = {}
    for scenario in all_scenarios:
        if scenario.key in wanted:
            peers = list(PEERS) if scenario.processes > 1 else SINGLE_PROCESS_PEERS
            limit = scenario.ideal * 4 + 120
            results[scenario.key] = run_scenario(scenario, peers, limit=limit)
            print(table(scenario, results[scenario.key]), "\n", flush=True)
    scale = run_scale(scale_n, 100, limit=75.0) if "scale" in wanted else None
    print(f"total {time.monotonic() - started:.0f} s")
    if args.no_write:
        return
    single = {s.key for s in all_scenarios if s.processes == 1}
    images = plots(results, ROOT / "docs" / "assets", single) if results else []
    command = "python benchmarks/run_all.py " + " ".join(sys.argv[1:])
    text = page(command.strip(), all_scenarios, results, scale, scale_n, images)
    (ROOT / "docs" / "benchmarks.md").write_text(text, encoding="utf-8")
    print("wrote docs/benchmarks.md and", ", ".join(f"docs/assets/{i}" for i in images))


if __name__ == "__main__":
    main()
