"""What every command shares: the one-line error contract, common options, clients and tables.

Usage errors exit 2, expected failures (server down, bad key) exit 1; both print one line.
`run` exits 3 when its `--budget` is spent (what was done is kept).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from llmclient import ConfigurationError, ErrorKind, LLMError, client_for
from llmclient.clients.registry import provider_class, provider_names

if TYPE_CHECKING:
    from llmclient import BaseLLMClient, ClientSettings

_N = TypeVar("_N", int, float)

PROG = "llmclient"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3  # `run --budget`: the budget is spent; rerun with a larger one to go on
PROVIDERS = provider_names()


class UsageError(Exception):
    """The command line or its inputs are wrong; nothing was sent (exit 2)."""


class CommandError(Exception):
    """An expected failure outside the library, e.g. a port in use (exit 1)."""

    def __init__(self, where: str, what: str, check: str) -> None:
        super().__init__(f"{where}: {what} — {check}")


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class CommandParser(Parser):
    """A command's parser whose options and handler come from its module, imported on first use.

    `llmclient --help` only needs each command's name and help line, so the command modules
    (and the simulated server, asyncio and the clients they import) load only for the command
    that runs, or when a command's own help is shown.
    """

    def __init__(self, *, module: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._module: str | None = module

    def _load(self) -> None:
        """Import the command's module once; it adds the options, `command` handles them."""
        if self._module is not None:
            module, self._module = importlib.import_module(self._module), None
            module.add_arguments(self)
            self.set_defaults(handler=module.command)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self._load()
        return super().parse_known_args(*args, **kwargs)

    def format_help(self) -> str:
        self._load()
        return super().format_help()

    def format_usage(self) -> str:
        self._load()
        return super().format_usage()


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """`-v` logs llmclient at INFO on stderr, `-vv` at DEBUG."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log to stderr: -v for INFO (retries, progress), -vv for DEBUG (every request)",
    )


def add_target(parser: argparse.ArgumentParser, *, provider_required: bool = True) -> None:
    """`--provider`, `--model`, `--base-url`: which service to talk to (keys: environment only)."""
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        required=provider_required,
        help="which API to speak: Ollama's native API, or OpenAI / any OpenAI-compatible server",
    )
    parser.add_argument(
        "--model", help="model name (default: LLMCLIENT_<PROVIDER>_MODEL from the environment)"
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        action="append",
        help="server URL (default: OLLAMA_HOST or OPENAI_BASE_URL, else the provider's default); "
        "several (repeated, or comma-separated) make an endpoint pool",
    )


def configure_logging(verbosity: int) -> None:
    """Library logs on stderr: errors only by default, INFO with -v, DEBUG with -vv."""
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    level = {0: logging.ERROR, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.getLogger("llmclient").setLevel(level)


def make_client(args: argparse.Namespace, **options: Any) -> BaseLLMClient:
    """The client for `--provider`, `--model` and `--base-url`, with extra client options."""
    return client_for(args.provider, args.model, base_url=base_url_of(args), **options)


def target_settings(args: argparse.Namespace) -> ClientSettings:
    """The settings `--provider`, `--model` and `--base-url` resolve to (nothing connected)."""
    options: dict[str, Any] = {"base_url": base_url_of(args)}  # None: from the environment
    return provider_class(args.provider).settings_for(args.model, **options)


def base_url_of(args: argparse.Namespace) -> str | None:
    """`--base-url` as one setting: several URLs joined with commas (a pool), or None."""
    return ",".join(args.base_url) if args.base_url else None


def require_model(settings: ClientSettings) -> str:
    """The model the settings name, or a usage error saying where to set one."""
    if settings.model:
        return settings.model
    variable = f"LLMCLIENT_{settings.provider.upper()}_MODEL"
    raise UsageError(f"no model given: pass --model or set {variable}")


def describe_failure(error: LLMError) -> str:
    """`<endpoint>: <what> — <what to check>` for an error that ends a command."""
    what = error.message.rstrip(".")
    if error.status_code is not None:
        what += f" (HTTP {error.status_code})"
    if error.attempts is not None and error.attempts > 1:
        what += f", after {error.attempts} attempts"
    where = error.endpoint or error.provider or PROG
    return f"{where}: {what} — {_what_to_check(error)}"


def _what_to_check(error: LLMError) -> str:
    provider = error.provider or "openai"
    if error.kind is ErrorKind.CONNECTION:
        variable = _native_variable(provider, "base_url", "the base URL")
        return f"is the server running? check --base-url or {variable}"
    if error.kind is ErrorKind.AUTHENTICATION:
        variable = _native_variable(provider, "api_key", "the API key variable")
        return f"check the API key in {variable} (or LLMCLIENT_{provider.upper()}_API_KEY)"
    if error.hint:
        return error.hint[0].lower() + error.hint[1:]
    if error.kind is ErrorKind.SERVER_ERROR:
        return "check the server's log; retrying later may help"
    return f"see `llmclient config --provider {provider}` for the settings in use"


def _native_variable(provider: str, setting: str, fallback: str) -> str:
    """The provider's own environment variable for `setting` (OLLAMA_HOST, ...)."""
    try:
        return provider_class(provider).native_env.get(setting, fallback)
    except LLMError:
        return fallback


def print_error(message: str) -> None:
    """One line on stderr, prefixed like argparse's own errors."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def exit_code_for(error: BaseException) -> int | None:
    """Print the one-line message for an expected failure and return its exit code, else None."""
    if isinstance(error, UsageError | ConfigurationError):
        print_error(error.message if isinstance(error, LLMError) else str(error))
        return EXIT_USAGE
    if isinstance(error, LLMError):
        print_error(describe_failure(error))
        return EXIT_FAILURE
    if isinstance(error, CommandError):
        print_error(str(error))
        return EXIT_FAILURE
    return None


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned with two spaces between them; text left, numbers right."""
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_number(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def milliseconds(seconds: float | None) -> int | None:
    """Seconds as whole milliseconds, for tables."""
    return None if seconds is None else round(seconds * 1000)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    return _bounded(int, text, 1, "an integer of at least 1")


def non_negative_int(text: str) -> int:
    """argparse type: an integer of 0 or more."""
    return _bounded(int, text, 0, "an integer of 0 or more")


def non_negative_float(text: str) -> float:
    """argparse type: a number of 0 or more."""
    return _bounded(float, text, 0, "a number of 0 or more")


def _bounded(kind: type[_N], text: str, low: _N, expected: str) -> _N:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value
