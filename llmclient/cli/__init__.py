"""The `llmclient` command line: demo, probe, run, config and simulate over the public API.

`main()` parses the command line, runs one command and turns expected failures into one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from llmclient import __version__
from llmclient.cli import config, demo, probe, run, simulate
from llmclient.cli._common import PROG, Parser, configure_logging, exit_code_for

__all__ = ["build_parser", "main"]

_COMMANDS = (demo, probe, run, config, simulate)
_KEY_FLAG = (
    "--api-key is not an option: keys are read from the environment only "
    "(OPENAI_API_KEY, OLLAMA_API_KEY or LLMCLIENT_<PROVIDER>_API_KEY), never from a command line"
)


def build_parser() -> Parser:
    """The top-level parser with one subcommand per module in `llmclient.cli`."""
    parser = Parser(
        prog=PROG,
        description="Provider-aware LLM client: see the failure, measure the server, run the job.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(commands)
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
