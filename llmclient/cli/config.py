"""`llmclient config`: the effective settings of a provider's client and where each came from.

Reads `client.settings.rows()`: secrets are masked there; invalid environment values exit 2.
When no `max_concurrent` is given (or it is `auto`), the local server is asked what it takes,
as a client's first request would, and the row shows the answer and where it came from.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING

from llmclient.cli._common import add_target, add_verbose, make_client, table, target_settings

if TYPE_CHECKING:
    from llmclient.config import ClientSettings

_PRECEDENCE = (
    "precedence: option > LLMCLIENT_{P}_<SETTING> > LLMCLIENT_<SETTING> > {native}"
    " > profile default"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `config`."""
    add_target(parser)
    add_verbose(parser)


def command(args: argparse.Namespace) -> int:
    """Print one row per setting: name, value (masked if secret), source."""
    from llmclient.clients.registry import provider_class

    client_class = provider_class(args.provider)
    settings = target_settings(args)
    rows = [(name, value, _source(name, source, value)) for name, value, source in settings.rows()]
    asked = asyncio.run(_ask_servers(args, settings))
    if asked is not None:
        rows = [asked if row[0] == "max_concurrent" else row for row in rows]
    rows.append(_budget_row())
    print(f"{settings.provider} settings for {settings.endpoint} ({client_class.__name__})")
    print(table(("setting", "value", "source"), rows))
    native = ", ".join(client_class.native_env.values())
    print(_PRECEDENCE.format(P=settings.provider.upper(), native=native))
    return 0


# Profile defaults that copy a server's own default: say so where config shows them.
_SERVER_DEFAULTS = {
    ("default (ollama profile)", "max_concurrent"): "Ollama's OLLAMA_NUM_PARALLEL default",
}


def _budget_row() -> tuple[str, str, str]:
    """The budget a client made here would count against: the `LLMCLIENT_BUDGET_*` ones."""
    from llmclient.config import BUDGET_ENV_PREFIX, budget_from_env

    budget = budget_from_env()
    if budget is None:
        return ("budget", "None", "unset")
    names = sorted(k for k in os.environ if k.upper().startswith(BUDGET_ENV_PREFIX))
    return ("budget", repr(budget), "env " + ", ".join(names))


def _source(name: str, source: str, value: str = "") -> str:
    """The library's "argument" is a command-line option here; a default that is the
    server's own names it."""
    if source == "argument":
        return f"option --{name.replace('_', '-')}"
    server_default = _SERVER_DEFAULTS.get((source, name))
    return f"default ({server_default}, {value})" if server_default else source


async def _ask_servers(
    args: argparse.Namespace, settings: ClientSettings
) -> tuple[str, str, str] | None:
    """The `max_concurrent` row per server: a pool server's own limit, or what the server
    said when asked as a client would; None when that adds nothing to the settings row."""
    from llmclient.config import public_url  # pydantic-settings: not for `--help`

    profile = settings.profile
    auto = profile.max_concurrent == "auto"
    default = _source(
        "max_concurrent", settings.sources["max_concurrent"], str(profile.max_concurrent)
    )
    pool = settings.pool
    own = pool.limits if pool is not None else (None,)
    values, sources, asked = [], [], False
    async with make_client(args) as client:
        for url, limit in zip(settings.base_urls, own, strict=True):
            name = public_url(url)
            if limit is not None:
                values.append(str(limit))
                sources.append(f"pool: {name}")
                continue
            if not client.asks_server(url):  # the rule a request follows
                values.append(str(profile.max_concurrent))
                sources.append(default)
                continue
            asked = True
            try:
                found = await client.server_capacity(url)
            except Exception as exc:
                found, why = None, f"not reached ({type(exc).__name__})"
            else:
                why = "did not say"
            if found is None:
                values.append(str(profile.max_concurrent))
                sources.append(f"{default}: {name} {why}")
            else:
                values.append(f"auto from {found.slots}" if auto else str(found.slots))
                sources.append(f"server: {found.source} at {name}")
    if not asked and all(limit is None for limit in own):
        return None
    return ("max_concurrent", ", ".join(values), "; ".join(sources))
