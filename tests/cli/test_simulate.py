"""`llmclient simulate` in the foreground: prints its URLs, serves, stops on SIGTERM/SIGINT.

Serving runs as a subprocess: it stops on a signal, and a signal handler needs a main thread."""

from __future__ import annotations

import asyncio
import signal

import pytest

from llmclient import OllamaClient, OpenAIClient
from tests.cli.helpers import assert_one_line_error, run_cli, start_cli


async def read_urls(process: asyncio.subprocess.Process) -> dict[str, str]:
    assert process.stdout is not None
    urls: dict[str, str] = {}
    while len(urls) < 2:
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert line, "simulate ended before printing its URLs"
        for name in ("OLLAMA_HOST", "OPENAI_BASE_URL"):
            if f"export {name}=" in line:
                urls[name] = line.split("=", 1)[1].strip()
    return urls


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_serves_both_protocols_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    process = await start_cli("simulate", "--latency", "0.001", "--parallel", "2")
    try:
        urls = await read_urls(process)
        async with OllamaClient("any-model", host=urls["OLLAMA_HOST"]) as ollama:
            assert await ollama.generate_answer("ping") == "Simulated reply to: ping"
        async with OpenAIClient("any-model", base_url=urls["OPENAI_BASE_URL"]) as openai:
            assert await openai.generate_answer("pong") == "Simulated reply to: pong"
    finally:
        process.send_signal(stop_signal)
        out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, err
    assert "stopped: 2 requests, 2 answered" in out.decode()
    assert "Traceback" not in err.decode()


async def test_injected_faults_are_served() -> None:
    process = await start_cli("simulate", "--latency", "0", "--fault", "500=1")
    try:
        urls = await read_urls(process)
        async with OllamaClient("m", host=urls["OLLAMA_HOST"], max_attempts=1) as client:
            with pytest.raises(Exception, match="500"):
                await client.generate_answer("ping")
    finally:
        process.terminate()
        await asyncio.wait_for(process.communicate(), 10)


async def test_port_in_use_is_one_line_exit_1() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run_cli("simulate", "--port", str(port))
    finally:
        server.close()
    line = assert_one_line_error(result, 1)
    assert f"127.0.0.1:{port}" in line and "--port" in line
