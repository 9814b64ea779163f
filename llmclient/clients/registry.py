"""Providers by name: `client_for("ollama", ...)` makes a client without importing every SDK.

Built-in providers are registered by import path and imported on first use; a subclass of
`BaseLLMClient` that defines `provider` registers itself when its class is created.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llmclient.clients._providers import PROVIDERS as _providers
from llmclient.clients._providers import register_provider
from llmclient.errors import ConfigurationError

if TYPE_CHECKING:
    from llmclient.clients.base import BaseLLMClient

__all__ = ["client_for", "provider_class", "provider_names", "register_provider"]


def provider_names() -> tuple[str, ...]:
    """Every registered provider name, sorted.

    >>> {"ollama", "openai"} <= set(provider_names())
    True
    """
    return tuple(sorted(_providers))


def provider_class(name: str) -> type[BaseLLMClient]:
    """The client class registered as `name` (importing its module on first use)."""
    try:
        entry = _providers[name.lower()]
    except (KeyError, AttributeError):
        known = ", ".join(provider_names())
        raise ConfigurationError(
            f"invalid argument: provider={name!r}: unknown provider (known: {known})"
        ) from None
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        # Importing the module registers the class itself (BaseLLMClient.__init_subclass__).
        entry = getattr(importlib.import_module(module), attribute)
        _providers[name.lower()] = entry
    return entry


def client_for(provider: str, model: str | None = None, **options: Any) -> BaseLLMClient:
    """A client of the provider registered as `provider`, e.g. `client_for("ollama", "llama3.2")`.

    `options` are the client's keyword arguments (`base_url`, `max_concurrent`, ...).
    """
    return provider_class(provider)(model, **options)
