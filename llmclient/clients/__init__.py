"""Provider clients: the abstract base, the registry, and the OpenAI and Ollama translations.

Each name is imported on first use (PEP 562), so `llmclient.clients.params` or `.base` can be
imported without the OpenAI and Ollama SDKs. To add a public name: one line in `_EXPORTS` and
the same import in the `TYPE_CHECKING` block.
"""

import typing as _typing

from llmclient._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    # name: module that defines it
    "AzureOpenAIClient": "llmclient.clients.azure",
    "BaseLLMClient": "llmclient.clients.base",
    "ChatRequest": "llmclient.clients.params",
    "client_for": "llmclient.clients.registry",
    "OllamaClient": "llmclient.clients.ollama",
    "OpenAIClient": "llmclient.clients.openai",
    "provider_class": "llmclient.clients.registry",
    "register_provider": "llmclient.clients.registry",
    "SamplingParams": "llmclient.clients.params",
    "TextStream": "llmclient.types",
}

__all__ = sorted(_EXPORTS, key=str.casefold)

if _typing.TYPE_CHECKING:
    from llmclient.clients.azure import AzureOpenAIClient as AzureOpenAIClient
    from llmclient.clients.base import BaseLLMClient as BaseLLMClient
    from llmclient.clients.ollama import OllamaClient as OllamaClient
    from llmclient.clients.openai import OpenAIClient as OpenAIClient
    from llmclient.clients.params import ChatRequest as ChatRequest
    from llmclient.clients.params import SamplingParams as SamplingParams
    from llmclient.clients.registry import client_for as client_for
    from llmclient.clients.registry import provider_class as provider_class
    from llmclient.clients.registry import register_provider as register_provider
    from llmclient.types import TextStream as TextStream


_load, __dir__ = _lazy_exports(__name__, globals(), _EXPORTS)

# Hidden from type checkers: they see the imports above, and a module `__getattr__` would make
# them accept any misspelt attribute.
if not _typing.TYPE_CHECKING:
    __getattr__ = _load
