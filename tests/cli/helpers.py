"""Run the command line as a subprocess (`python -m llmclient`) while the test's server serves."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    """Exit code and decoded output of one command."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start `python -m llmclient ARGS` with the test's (clean) environment plus `env`."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmclient",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the command to its end (at most 60 s); in-process servers keep serving meanwhile."""
    process = await start_cli(*args, env=env)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def assert_one_line_error(result: Result, code: int) -> str:
    """The failure contract: the exit code, one line on stderr, never a traceback."""
    assert result.code == code, result
    assert len(result.err_lines) == 1, result.err
    assert "Traceback" not in result.err
    return result.err_lines[0]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One JSON value per line (strings are written as they are, to make bad lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def count_lines(path: Path) -> int:
    """Newline-terminated lines in `path` (0 when it does not exist yet)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every line of an output file, each of which must be a complete JSON record."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n") or not raw
    return [json.loads(line) for line in raw.splitlines()]
