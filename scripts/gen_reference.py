"""Write the generated reference pages: docs/reference/configuration.md and docs/reference/cli.md.

    python scripts/gen_reference.py          # rewrite both pages
    python scripts/gen_reference.py --check  # exit 1 if a committed page is out of date

The configuration page comes from the settings model (`llmclient.config.ClientOptions`,
`SETTING_NAMES`, `ConcurrencyProfile`, `RetryPolicy`, the built-in profiles and each provider's
native variables); the CLI page from the argparse parsers. tests/test_docs.py checks both.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# What each setting means. A setting added to ClientOptions without a line here stops the
# generator (and so the test), so the page never silently lacks one.
SETTING_DOCS: dict[str, str] = {
    "model": "Chat model (the constructors' first argument).",
    "embed_model": "Embedding model for `embed`; defaults to `model`.",
    "base_url": "Server URL (Ollama: the host; OpenAI-compatible: the `/v1` base URL).",
    "api_key": "API key; never logged or shown (`llmclient config` masks it).",
    "max_concurrent": 'Requests on the wire at once for the endpoint: an integer, `"auto"` '
    "(adaptive), a `Limit` or a function returning one.",
    "rpm": "Requests per minute (leaky bucket, a burst of the full rate allowed).",
    "tpm": "Tokens per minute, charged with an estimate and settled from the reported usage.",
    "timeout": "Seconds per attempt on the wire.",
    "max_attempts": "Attempts for faults (500s, dropped connections); 1 turns retries off.",
    "max_elapsed": "Seconds from the call during which back-pressure (429, 503) is retried.",
    "share_limits": "Share the endpoint's limits with every client of the same server "
    "in the process.",
    "discover_limits": "When no `max_concurrent` is given (or it is `auto`), ask a local "
    "server once what it can take (llama.cpp `/props`, vLLM `/metrics`) and start there "
    "(see Limits learned from servers).",
    "limits": 'Where limits live: `"local"` (this process) or a `redis://`, `rediss://` or '
    "`unix://` URL shared by every process (see Shared limits); in code also a `RedisBackend`.",
    "on_backend_error": 'When Redis is unreachable: `"wait"` (up to 30 s) or `"fail"`; both '
    "end in `LimitsUnavailableError`, never in per-process limits.",
    "cache": "Response cache: a SQLite file's path, a `redis://` URL, a `CacheStore` object, "
    'or `"off"` (the default). See [Response cache](../cache.md).',
    "cache_mode": '`"replay"` caches every call (the n-th identical sampled call gets the '
    'n-th stored answer); `"deterministic"` only calls with temperature 0 or a seed.',
}
PROFILE_DOCS: dict[str, str] = {
    "name": "Shown as the source of defaults (`default (ollama profile)`).",
    "adaptive_max": 'Upper bound of the `"auto"` limit.',
    "embed_batch_size": "Most texts coalesced into one embedding request.",
    "embed_batch_wait": "Seconds `embed` waits for other callers' texts to coalesce.",
    "retry": "The `RetryPolicy` below.",
}
RETRY_DOCS: dict[str, str] = {
    "max_server_wait": "Longest server-directed wait (Retry-After) made; longer fails at once.",
    "initial_wait": "First backoff wait, seconds, doubling up to `max_wait`.",
    "max_wait": "Longest backoff wait, seconds.",
    "jitter": "Up to this many seconds added at random to each backoff wait.",
    "budget_tokens": "Retry budget per endpoint: fault retries stop below half of it.",
    "budget_refund": "Tokens a success earns back (a failed attempt spends one).",
}


def _type_name(kind: object) -> str:
    if typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    text = getattr(kind, "__name__", None) or str(kind)
    return {
        "PositiveFloat": "float > 0",
        "PositiveInt": "int > 0",
        "NonEmptyStr": "str",
    }.get(text, text)


def _setting_type(name: str) -> str:
    from llmclient.config import ClientOptions

    if name == "model":
        return "str"
    if name == "max_concurrent":
        return 'int > 0, "auto", Limit'
    hint = typing.get_type_hints(ClientOptions, include_extras=True)[name]
    args = typing.get_args(hint)
    metadata = [str(a) for a in args[1:]]
    base = _type_name(hint)
    if any("gt=0" in m for m in metadata):
        return f"{base} > 0"
    return base


def _profile_value(profile: object, name: str) -> str:
    retry = profile.retry  # type: ignore[attr-defined]
    value = getattr(retry, name) if name in ("max_attempts", "max_elapsed") else None
    if value is None and hasattr(profile, name):
        value = getattr(profile, name)
    return "-" if value is None else f"`{value}`"


def configuration_page() -> str:
    """The Markdown of docs/reference/configuration.md."""
    from llmclient.clients.registry import provider_class, provider_names
    from llmclient.config import SETTING_NAMES
    from llmclient.profiles import (
        LOCAL_PROFILE,
        OLLAMA_PROFILE,
        OPENAI_PROFILE,
        ConcurrencyProfile,
        RetryPolicy,
    )

    missing = [n for n in SETTING_NAMES if n not in SETTING_DOCS]
    missing += [
        n
        for n in ConcurrencyProfile.model_fields
        if n not in SETTING_DOCS and n not in PROFILE_DOCS
    ]
    missing += [
        n for n in RetryPolicy.model_fields if n not in SETTING_DOCS and n not in RETRY_DOCS
    ]
    if missing:
        raise SystemExit(
            f"scripts/gen_reference.py: describe {', '.join(missing)} in SETTING_DOCS, "
            "PROFILE_DOCS or RETRY_DOCS"
        )
    providers = {name: provider_class(name) for name in provider_names()}
    profiles = {"ollama": OLLAMA_PROFILE, "openai": OPENAI_PROFILE, "local": LOCAL_PROFILE}
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/gen_reference.py from llmclient.config and "
        "llmclient.profiles: edit those, then run the script. -->",
        "",
        "Every setting a client takes as a keyword argument, and from the environment.",
        "Precedence, highest first:",
        "",
        "1. the constructor argument (`OllamaClient(..., max_concurrent=2)`);",
        "2. `LLMCLIENT_<PROVIDER>_<SETTING>` (`LLMCLIENT_OLLAMA_MAX_CONCURRENT=2`);",
        "3. `LLMCLIENT_<SETTING>`, for every provider (`LLMCLIENT_TIMEOUT=30`);",
        "4. the provider's native variable (`OLLAMA_NUM_PARALLEL`, `OPENAI_API_KEY`, ...);",
        "5. the default of the client's profile (the `profile=` argument, or the provider's).",
        "",
        "Empty variables count as unset. An invalid value raises `ConfigurationError` naming "
        "the variable and the value when the client is made. "
        "`llmclient config --provider NAME` prints every effective value and its source.",
        "",
        "## Settings",
        "",
        "| setting | type | meaning | environment | native variables |",
        "|---|---|---|---|---|",
    ]
    for name in SETTING_NAMES:
        native = sorted(
            f"`{cls.native_env[name]}` ({provider})"
            for provider, cls in providers.items()
            if name in cls.native_env
        )
        env = f"`LLMCLIENT_<PROVIDER>_{name.upper()}`, `LLMCLIENT_{name.upper()}`"
        cells = [f"`{name}`", _setting_type(name), SETTING_DOCS[name], env]
        cells.append(", ".join(native) or "-")
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out += [
        "",
        f"`<PROVIDER>` is one of {', '.join(f'`{p.upper()}`' for p in providers)} (or the "
        "name of your own provider class).",
        "",
        "## Defaults per profile",
        "",
        "The provider picks the profile from the base URL: Ollama gets `ollama`; an "
        "OpenAI-compatible URL on a loopback, private, link-local or single-label host gets "
        "`local`, anything else (the OpenAI and Azure clouds) `openai`. Ollama's "
        "`max_concurrent` is `OLLAMA_NUM_PARALLEL` when that is set.",
        "",
        "| setting | " + " | ".join(f"`{p}`" for p in profiles) + " |",
        "|---|" + "---|" * len(profiles),
    ]
    profile_settings = [n for n in SETTING_NAMES if n in ConcurrencyProfile.model_fields]
    profile_settings += [n for n in SETTING_NAMES if n in RetryPolicy.model_fields]
    for name in profile_settings:
        values = [_profile_value(p, name) for p in profiles.values()]
        out.append(f"| `{name}` | " + " | ".join(values) + " |")
    out += [
        "",
        "## Profile fields without a variable",
        "",
        "Set these through `profile=ConcurrencyProfile(...)` (the keyword arguments above still "
        "apply on top of it).",
        "",
        "| field | meaning | " + " | ".join(f"`{p}`" for p in profiles) + " |",
        "|---|---|" + "---|" * len(profiles),
    ]
    for name in ConcurrencyProfile.model_fields:
        if name in SETTING_NAMES:
            continue
        values = [
            "`RetryPolicy()`" if name == "retry" else f"`{getattr(p, name)}`"
            for p in profiles.values()
        ]
        out.append(f"| `{name}` | {PROFILE_DOCS[name]} | " + " | ".join(values) + " |")
    out += [
        "",
        "## Retry policy fields without a variable",
        "",
        "`ConcurrencyProfile(retry=RetryPolicy(...))`; the same defaults in every profile.",
        "",
        "| field | meaning | default |",
        "|---|---|---|",
    ]
    for name, info in RetryPolicy.model_fields.items():
        if name not in SETTING_NAMES:
            out.append(f"| `{name}` | {RETRY_DOCS[name]} | `{info.default}` |")
    out += [
        "",
        "## Provider variables",
        "",
        "| provider | class | default base URL | native variables |",
        "|---|---|---|---|",
    ]
    for provider, cls in providers.items():
        variables = ", ".join(f"`{var}` ({name})" for name, var in cls.native_env.items())
        out.append(
            f"| `{provider}` | `{cls.__name__}` | `{cls.default_base_url}` | {variables or '-'} |"
        )
    out.append("")
    return "\n".join(out)


def _help_texts(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    texts = [(parser.prog, parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts += _help_texts(sub)
    return texts


def cli_page() -> str:
    """The Markdown of docs/reference/cli.md: every command's --help."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix the width
    from llmclient.cli import build_parser

    out = [
        "# CLI reference",
        "",
        "<!-- Generated by scripts/gen_reference.py from the argparse parsers of llmclient.cli: "
        "edit those, then run the script. -->",
        "",
        "Every command's `--help`. The [command line guide](../cli.md) explains what each one "
        "is for, with examples.",
        "",
    ]
    for prog, text in _help_texts(build_parser()):
        out += [f"## `{prog}`", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(out)


def api_page() -> str:
    """The Markdown of docs/reference/api.md: one mkdocstrings entry per name in `__all__`."""
    import llmclient

    out = [
        "# API reference",
        "",
        "<!-- Generated by scripts/gen_reference.py from llmclient.__all__: add a public name "
        "there, then run the script. -->",
        "",
        "Every public name, importable from `llmclient` (`from llmclient import OllamaClient`). "
        "The simulated server for tests is `llmclient.testing.SimulatedServer` (below).",
        "",
    ]
    for name in llmclient.__all__:
        if not name.startswith("_"):
            out += [f"::: llmclient.{name}", ""]
    out += ["## Testing", "", "::: llmclient.testing.SimulatedServer", ""]
    return "\n".join(out)


PAGES: dict[str, Callable[[], str]] = {
    "docs/reference/api.md": api_page,
    "docs/reference/configuration.md": configuration_page,
    "docs/reference/cli.md": cli_page,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is out of date")
    args = parser.parse_args()
    stale = []
    for relative, render in PAGES.items():
        path = ROOT / relative
        text = render()
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(relative)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {relative}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/gen_reference.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
