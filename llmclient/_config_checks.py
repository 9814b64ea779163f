"""Checks of setting values, and the message for a bad one (`llmclient.config` uses them).

The field validators of `limits`, `cache` and `base_url`; the base URL checks (one URL, or a
pool's, in the provider's canonical form); a pydantic `ValidationError` as one line naming
each bad setting and its value (secrets hidden, URLs without their password).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import PlainValidator, ValidationError

from llmclient.cache import CacheStore, is_store
from llmclient.errors import ConfigurationError
from llmclient.limits.backends import REDIS_SCHEMES, LimitBackend, public_url
from llmclient.limits.pool import EndpointPool

__all__ = ["Cache", "Limits", "checked_urls", "describe_errors", "parse_base_url"]

_SECRET_FIELDS = frozenset({"api_key"})
_URL_FIELDS = frozenset({"limits", "cache"})  # may hold a password: shown without it


def _check_limits(value: object) -> str | LimitBackend:
    """`"local"`, a Redis URL, or a backend object (anything with `state` and `share`)."""
    if isinstance(value, str):
        text = value.strip()
        if text == "local" or (urlsplit(text).scheme in REDIS_SCHEMES and "://" in text):
            return text
        raise ValueError("must be 'local' or a redis://, rediss:// or unix:// URL")
    if callable(getattr(value, "state", None)) and callable(getattr(value, "share", None)):
        return value  # type: ignore[return-value]
    raise ValueError("must be 'local', a Redis URL or a limits backend")


Limits = Annotated[str | LimitBackend, PlainValidator(_check_limits)]


def _check_cache(value: object) -> str | CacheStore:
    """`"off"`, a SQLite file's path, a Redis URL, or a store object (with `get` and `set`)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("must be a file path, a redis:// URL or 'off', not empty")
        if "://" in text and urlsplit(text).scheme not in REDIS_SCHEMES:
            raise ValueError("must be a file path or a redis://, rediss:// or unix:// URL")
        return text
    if is_store(value):
        return value  # type: ignore[return-value]
    raise ValueError("must be a file path, a Redis URL, 'off' or a cache store")


Cache = Annotated[str | CacheStore, PlainValidator(_check_cache)]


def parse_base_url(value: object) -> object:
    """Accept a URL, several (a list, or one string with commas) or an `EndpointPool`."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must be a URL, not empty")
        return value.strip()
    if isinstance(value, EndpointPool):
        return value
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("must be a URL, a list of URLs or an EndpointPool")


def describe_errors(error: ValidationError, name_of: Callable[[str], str]) -> str:
    """`error` as `NAME=value: problem; ...`, each setting named by `name_of(field)`."""
    parts = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        if field in _SECRET_FIELDS:
            shown = "<hidden>"
        elif field in _URL_FIELDS and isinstance(value, str):
            shown = repr(public_url(value))
        else:
            shown = repr(value)
        parts.append(f"{name_of(field)}={shown}: {message}")
    return "; ".join(parts)


def checked_urls(
    value: str | Sequence[str] | EndpointPool,
    sources: Mapping[str, str],
    normalize: Callable[[str], str],
) -> tuple[str, EndpointPool | None]:
    """The first URL in canonical form, and the pool when several (or a pool) were given."""
    source = sources["base_url"]
    where = (
        f"invalid environment: {source.removeprefix('env ')}"
        if source.startswith("env ")
        else "invalid argument: base_url"
    )
    if isinstance(value, str):
        urls: Sequence[str] = value.split(",")
    else:
        urls = value.urls if isinstance(value, EndpointPool) else value
    if source.startswith("env LLMCLIENT_"):
        normalize = _full_url_only(normalize)  # llmclient's own variables take whole URLs
    if len(urls) == 1 and not isinstance(value, EndpointPool):
        return _checked_url(urls[0], f"{where}={urls[0]!r}", normalize), None
    shown = value if isinstance(value, str) else list(urls)
    checked: list[str] = []
    for url in urls:
        if not url.strip():
            raise ConfigurationError(f"{where}={shown!r}: an empty URL (a stray comma?)")
        checked.append(_checked_url(url.strip(), f"{where}={shown!r}: {url.strip()!r}", normalize))
        if checked[-1] in checked[:-1]:
            raise ConfigurationError(f"{where}={shown!r}: {url.strip()!r} is listed twice")
    pool = value if isinstance(value, EndpointPool) else EndpointPool(checked)
    return checked[0], pool.with_urls(checked)


def _full_url_only(normalize: Callable[[str], str]) -> Callable[[str], str]:
    """`normalize`, for a URL that names its scheme (a bare word is a mistake, not a host)."""

    def checked(url: str) -> str:
        if "://" not in url:
            raise ValueError("no scheme")
        return normalize(url)

    return checked


def _checked_url(url: str, where: str, normalize: Callable[[str], str]) -> str:
    """`url` in the provider's canonical form, or an error starting with `where` it came from."""
    problem = "must be an http:// or https:// URL with a host, like http://127.0.0.1:11434"
    if "://" in url and not urlsplit(url.strip()).hostname:  # "http://": before Ollama's
        raise ConfigurationError(f"{where}: {problem}")  # parsing makes it a host "http"
    try:
        normalized = normalize(url).rstrip("/")
        parts = urlsplit(normalized)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as error:
        raise ConfigurationError(f"{where}: {problem} ({error})") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        raise ConfigurationError(f"{where}: {problem}")
    return normalized
