"""Run the command line while the test's server serves: in this process (`run_cli`), or as a
`python -m llmclient` subprocess where the process itself is the point (`start_cli`,
`run_cli_process`: kills, signals, the entry points)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from llmclient.cli import main


@dataclass(frozen=True)
class Result:
    """Exit code and decoded output of one command."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


# --- in this process ---------------------------------------------------------------------------

#: One command at a time: stdout, stderr, the environment and logging are process-wide.
_ONE_COMMAND = threading.Lock()


async def run_cli(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """Run `llmclient ARGS` in this process with `env` added to the test's (clean) environment.

    `main()` runs in a worker thread, since it calls `asyncio.run` and the test's event loop
    must keep serving meanwhile. What the command writes to stdout and stderr (its logging
    too) is captured as a subprocess's would be; commands run one at a time.
    """
    async with asyncio.timeout(60):
        return await asyncio.to_thread(_run_main, list(args), dict(env or {}))


def _run_main(argv: list[str], env: dict[str, str]) -> Result:
    with _ONE_COMMAND, _environment(env), _captured() as (out, err), _fresh_logging():
        try:
            code = main(argv)
        except SystemExit as done:  # as the interpreter turns it into an exit code
            code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    return Result(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _CommandStream(io.TextIOBase):
    """Stands in for sys.stdout or sys.stderr while a command runs: what the test's own thread
    writes (its event loop, its servers) goes where it always went, everything else is the
    command's and is kept in `captured`."""

    def __init__(self, replaced: TextIO, test_thread: int) -> None:
        self.captured = io.StringIO()
        self._replaced = replaced
        self._test_thread = test_thread

    def _target(self) -> TextIO:
        return self._replaced if threading.get_ident() == self._test_thread else self.captured

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:  # a pipe, as for a subprocess: no progress bar
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


@contextlib.contextmanager
def _captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    test_thread = threading.main_thread().ident
    assert test_thread is not None
    out = _CommandStream(sys.stdout, test_thread)
    err = _CommandStream(sys.stderr, test_thread)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        yield out.captured, err.captured
    finally:
        sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _fresh_logging() -> Iterator[None]:
    """Logging as in a new process: the root logger starts without handlers, so the command's
    `logging.basicConfig` installs one on the captured stderr. Afterwards that handler goes and
    pytest's handlers and the levels come back, so nothing leaks into the next test."""
    root, package = logging.getLogger(), logging.getLogger("llmclient")
    handlers, root_level, package_level = root.handlers[:], root.level, package.level
    for handler in handlers:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(root_level)
        package.setLevel(package_level)


# --- as a subprocess ---------------------------------------------------------------------------


async def start_cli(
    *args: str, env: Mapping[str, str] | None = None, program: list[str] | None = None
) -> asyncio.subprocess.Process:
    """Start `python -m llmclient ARGS` (or `program ARGS`) with the test's (clean) environment
    plus `env`."""
    return await asyncio.create_subprocess_exec(
        *(program or [sys.executable, "-m", "llmclient"]),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def run_cli_process(
    *args: str, env: Mapping[str, str] | None = None, program: list[str] | None = None
) -> Result:
    """Run the command as a subprocess to its end (at most 60 s, then it is killed)."""
    process = await start_cli(*args, env=env, program=program)
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


# --- checks and files --------------------------------------------------------------------------


def assert_one_line_error(result: Result, code: int) -> str:
    """The failure contract: the exit code, one line on stderr, never a traceback."""
    assert result.code == code, result
    assert len(result.err_lines) == 1, result.err
    assert "Traceback" not in result.err
    return result.err_lines[0]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
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
