"""Provider clients: the abstract base and the OpenAI and Ollama translations.

Each name is imported on first use (PEP 562), so `llmclient.clients.params` or `.base` can be
imported without the OpenAI and Ollama SDKs. To add a public name: one line in `_EXPORTS` and
the same import in the `TYPE_CHECKING` block.
"""

import importlib as _importlib
import typing as _typing

_EXPORTS: dict[str, str] = {
    # name: module that defines it
    "BaseLLMClient": "llmclient.clients.base",
    "ChatRequest": "llmclient.clients.base",
    "OllamaClient": "llmclient.clients.ollama",
    "OpenAIClient": "llmclient.clients.openai",
    "SamplingParams": "llmclient.clients.params",
    "TextStream": "llmclient.clients.base",
}

__all__ = sorted(_EXPORTS, key=str.casefold)

if _typing.TYPE_CHECKING:
    from llmclient.clients.base import BaseLLMClient as BaseLLMClient
    from llmclient.clients.base import ChatRequest as ChatRequest
    from llmclient.clients.base import TextStream as TextStream
    from llmclient.clients.ollama import OllamaClient as OllamaClient
    from llmclient.clients.openai import OpenAIClient as OpenAIClient
    from llmclient.clients.params import SamplingParams as SamplingParams


def _load(name: str) -> object:
    """Import the module that defines `name`, and keep the value so this runs once per name."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


# Hidden from type checkers: they see the imports above, and a module `__getattr__` would make
# them accept any misspelt attribute.
if not _typing.TYPE_CHECKING:
    __getattr__ = _load
