"""What both providers do with their HTTP layer's exceptions and answers.

The OpenAI SDK runs on `httpx2`, the Ollama SDK on `httpx`; both packages have the same
exception classes, so one function translates either, given the module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

from llmclient.errors import (
    LLMConnectionError,
    LLMError,
    MalformedResponseError,
    RequestTimeoutError,
)

__all__ = ["answer_shape", "not_json_object", "transport_error"]


def transport_error(error: BaseException, http: ModuleType, provider: str) -> LLMError | None:
    """The llmclient error for an `httpx`/`httpx2` exception (`http` is the module), or None."""
    if isinstance(error, http.TimeoutException):
        return RequestTimeoutError("the request timed out", provider=provider)
    if isinstance(error, http.DecodingError):
        return MalformedResponseError(
            f"the answer could not be decoded ({error})", provider=provider
        )
    if isinstance(error, http.ConnectError):
        return LLMConnectionError(
            f"could not connect ({type(error).__name__}: {error})", provider=provider, refused=True
        )
    if isinstance(error, http.TransportError):
        return LLMConnectionError(
            f"the connection broke before the answer was complete ({type(error).__name__})",
            provider=provider,
        )
    return None


def not_json_object(content_type: str, body: bytes) -> str | None:
    """Why a successful answer cannot be the JSON object an API promises, or None if it can.

    >>> not_json_object("text/html; charset=utf-8", b"<html>")
    "the answer is 'text/html; charset=utf-8', not JSON (a proxy's page?)"
    >>> not_json_object("application/json", b" []")
    'the answer is JSON but not an object'
    >>> not_json_object("application/json", b'{"a": 1}') is None
    True
    """
    if not content_type.startswith("application/json"):
        return f"the answer is {content_type or 'untyped'!r}, not JSON (a proxy's page?)"
    if body.lstrip()[:1] != b"{":
        return "the answer is JSON but not an object"
    return None


@contextlib.contextmanager
def answer_shape(what: str, provider: str) -> Iterator[None]:
    """Turn a shape error while reading a received answer into `MalformedResponseError`.

    Only for code that reads an answer already received: there, a missing attribute or a
    wrong type means the server sent something else than `what`.
    """
    try:
        yield
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as error:
        raise MalformedResponseError(
            f"the answer is not a {what} ({type(error).__name__}: {error})", provider=provider
        ) from error
