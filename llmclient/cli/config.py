"""`llmclient config`: the effective settings of a provider's client and where each came from.

Reads `client.settings.rows()`: secrets are masked there; invalid environment values exit 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from llmclient.cli._common import add_target, add_verbose, table, target_settings

HELP = "show the effective settings for a provider, each with its source"
_PRECEDENCE = (
    "precedence: option > LLMCLIENT_{P}_<SETTING> > LLMCLIENT_<SETTING> > {native}"
    " > profile default"
)


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
    from llmclient.clients.registry import provider_class

    client_class = provider_class(args.provider)
    settings = target_settings(args)
    rows = [(name, value, _source(name, source)) for name, value, source in settings.rows()]
    print(f"{settings.provider} settings for {settings.endpoint} ({client_class.__name__})")
    print(table(("setting", "value", "source"), rows))
    native = ", ".join(client_class.native_env.values())
    print(_PRECEDENCE.format(P=settings.provider.upper(), native=native))
    return 0


def _source(name: str, source: str) -> str:
    """The library's "argument" is a command-line option here."""
    return f"option --{name.replace('_', '-')}" if source == "argument" else source
