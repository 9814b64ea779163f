"""The `llmclient` command line: demo, probe, run, config and simulate over the public API.

`main()` parses the command line, runs one command and turns expected failures into one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from llmclient import __version__
from llmclient.cli._common import PROG, CommandParser, Parser, configure_logging, exit_code_for

__all__ = ["build_parser", "main"]

# name: (help line, rest of the description). `llmclient.cli.<name>` holds the command's
# options (`add_arguments`) and body (`command`), imported only when that command is parsed.
_COMMANDS = {
    "demo": (
        "show unbounded fan-out against OllamaClient on a simulated Ollama, warm model and"
        " bounded queue (~12 s)",
        ". Nothing leaves this machine: the server is simulated.",
    ),
    "probe": ("measure the service's real concurrency capacity and recommend max_concurrent", "."),
    "run": (
        "answer every line of a JSONL file into another, resumably",
        '. Input lines: {"id": ..., "prompt": "..."} or {"id": ..., "messages": [...]}, with'
        " optional parameters (temperature, max_tokens, ...). Rerun the same command to resume"
        " after an interruption.",
    ),
    "config": (
        "show the effective settings for a provider, each with its source",
        ". API keys are shown masked; set them in the environment.",
    ),
    "simulate": (
        "run a simulated Ollama/OpenAI server (no model, no GPU) until Ctrl-C",
        ". It answers Ollama's /api/* and OpenAI's /v1/* with canned text.",
    ),
}
_KEY_FLAG = (
    "--api-key is not an option: keys are read from the environment only "
    "(OPENAI_API_KEY, OLLAMA_API_KEY or LLMCLIENT_<PROVIDER>_API_KEY), never from a command line"
)


def build_parser() -> Parser:
    """The top-level parser with one subcommand per command module in `llmclient.cli`."""
    parser = Parser(
        prog=PROG,
        description="Provider-aware LLM client: see the failure, measure the server, run the job.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
    )
    for name, (summary, more) in _COMMANDS.items():
        commands.add_parser(
            name, help=summary, description=summary + more, module=f"{__name__}.{name}"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (0 ok, 1 expected failure, 2 usage error)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if any(a == "--api-key" or a.startswith("--api-key=") for a in arguments):
            parser.error(_KEY_FLAG)
        args = parser.parse_args(arguments)
    except SystemExit as done:  # --help, --version, or a usage error already printed
        return done.code if isinstance(done.code, int) else 0
    configure_logging(args.verbose)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        handled = exit_code_for(error)
        if handled is None:
            raise
        return handled
    return code
