"""`llmclient config`: the effective settings of a provider's client and where each came from.

Reads `client.settings.rows()`: secrets are masked there; invalid environment values exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from llmclient.cli._common import add_target, add_verbose, make_client, table

HELP = "show the effective settings for a provider, each with its source"
_PRECEDENCE = (
    "precedence: option > LLMCLIENT_{P}_<SETTING> > LLMCLIENT_<SETTING> > {native}"
    " > profile default"
)
_NATIVE = {"ollama": "OLLAMA_HOST, OLLAMA_NUM_PARALLEL, OLLAMA_API_KEY", "openai": "OPENAI_*"}


def add_parser(commands: Any) -> None:
    """Register `config` on the top-level subparsers."""
    parser = commands.add_parser(
        "config",
        help=HELP,
        description=HELP + ". API keys are shown masked; set them in the environment.",
    )
    add_target(parser)
    add_verbose(parser)
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """Print one row per setting: name, value (masked if secret), source."""
    client = make_client(args)
    try:
        rows = [
            (name, value, _source(name, source)) for name, value, source in client.settings.rows()
        ]
        print(f"{client.provider} settings for {client.endpoint_name} ({type(client).__name__})")
        print(table(("setting", "value", "source"), rows))
        print(_PRECEDENCE.format(P=client.provider.upper(), native=_NATIVE[client.provider]))
    finally:
        asyncio.run(client.aclose())
    return 0


def _source(name: str, source: str) -> str:
    """The library's "argument" is a command-line option here."""
    return f"option --{name.replace('_', '-')}" if source == "argument" else source
