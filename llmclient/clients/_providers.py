"""The table of providers by name, below both `base` and `registry` so neither imports the
other at runtime: each `BaseLLMClient` subclass that defines `provider` enters itself here, and
`registry` reads the table (importing a built-in provider's module on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmclient.clients.base import BaseLLMClient

__all__ = ["PROVIDERS", "register_provider"]

PROVIDERS: dict[str, str | type[BaseLLMClient]] = {
    "azure": "llmclient.clients.azure:AzureOpenAIClient",
    "ollama": "llmclient.clients.ollama:OllamaClient",
    "openai": "llmclient.clients.openai:OpenAIClient",
}


def register_provider(name: str, client_class: str | type[BaseLLMClient]) -> None:
    """Make `client_for(name)` build `client_class` (a class, or "module:Class" to import)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"provider name must be a non-empty string, got {name!r}")
    PROVIDERS[name.lower()] = client_class
