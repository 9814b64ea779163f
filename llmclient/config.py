"""Effective client settings from arguments, environment and profile, with where each came from.

Precedence, highest first: constructor argument > `LLMCLIENT_<PROVIDER>_<SETTING>` >
`LLMCLIENT_<SETTING>` > the provider's native variable (`OLLAMA_HOST`, `OLLAMA_NUM_PARALLEL`,
`OPENAI_API_KEY`, `OPENAI_BASE_URL`, ...) > the profile's default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypedDict, get_type_hints
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    create_model,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmclient.cache import CacheMode, CacheStore, is_store
from llmclient.errors import ConfigurationError
from llmclient.limits.backends import REDIS_SCHEMES, LimitBackend, public_url
from llmclient.limits.pool import EndpointPool
from llmclient.limits.spending import Budget
from llmclient.profiles import ConcurrencyProfile, MaxConcurrent, MaxConcurrentSpec

NonEmptyStr = Annotated[str, Field(min_length=1)]


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

__all__ = [
    "BUDGET_ENV_PREFIX",
    "SETTING_NAMES",
    "BaseUrl",
    "ClientOptions",
    "ClientSettings",
    "SettingRow",
    "budget_from_env",
    "public_url",
    "resolve_settings",
]


def _parse_base_url(value: object) -> object:
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


BaseUrl = Annotated[str | Sequence[str] | EndpointPool, PlainValidator(_parse_base_url)]
"""One server's URL; several (a list, or commas in one string) or an `EndpointPool` make a pool."""


class ClientOptions(TypedDict, total=False):
    """The settings every client takes as keyword arguments (and `model`), and from the environment.

    This one definition drives the constructors' keywords, the environment variables
    (`LLMCLIENT_<PROVIDER>_<NAME>`, `LLMCLIENT_<NAME>`) and `llmclient config`.
    """

    embed_model: NonEmptyStr
    base_url: BaseUrl
    api_key: str
    max_concurrent: MaxConcurrent
    rpm: PositiveFloat
    tpm: PositiveInt
    timeout: PositiveFloat
    max_attempts: PositiveInt
    max_elapsed: PositiveFloat
    share_limits: bool
    discover_limits: bool
    limits: Limits
    on_backend_error: Literal["wait", "fail"]
    cache: Cache
    cache_mode: CacheMode


_FIELD_TYPES: dict[str, Any] = {
    "model": NonEmptyStr,  # the constructors' first positional argument
    **{
        name: SecretStr if name == "api_key" else kind
        for name, kind in get_type_hints(ClientOptions, include_extras=True).items()
    },
}
SETTING_NAMES: tuple[str, ...] = tuple(_FIELD_TYPES)
_PROFILE_FIELDS = ("max_concurrent", "rpm", "tpm", "timeout", "share_limits", "discover_limits")
_RETRY_FIELDS = ("max_attempts", "max_elapsed")
_SECRET_FIELDS = frozenset({"api_key"})
_URL_FIELDS = frozenset({"limits", "cache"})  # may hold a password: shown without it
_OPTIONAL_FIELDS: dict[str, Any] = {
    name: (kind | None, None) for name, kind in _FIELD_TYPES.items()
}

_ArgumentsModel = create_model(
    "Arguments",
    __config__=ConfigDict(extra="forbid", str_strip_whitespace=True),
    **_OPTIONAL_FIELDS,
)


class _EnvBase(BaseSettings):
    """One prefix worth of environment variables (the prefix is given per instance)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_ignore_empty=True)


_EnvLayer = create_model("EnvLayer", __base__=_EnvBase, **_OPTIONAL_FIELDS)


SettingRow = tuple[str, str, str]  # (setting, value for display, source)


class ClientSettings(BaseModel):
    """The settings a client runs with, and for each one the place it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    provider: str
    model: str | None
    embed_model: str | None
    base_url: str
    api_key: SecretStr | None
    profile: ConcurrencyProfile
    sources: dict[str, str]
    limits: Any = "local"  # "local", a Redis URL or a LimitBackend
    on_backend_error: Literal["wait", "fail"] = "wait"
    pool: EndpointPool | None = None  # several servers: base_url is the first
    cache: Any = None  # None (off), a SQLite path, a Redis URL or a CacheStore
    cache_mode: CacheMode = "replay"

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Every server's base URL: the pool's, or just `base_url`."""
        return self.pool.urls if self.pool is not None else (self.base_url,)

    @property
    def endpoint(self) -> str:
        """The base URL for messages: scheme, host, port and path, never credentials.

        >>> ClientSettings(provider="x", model=None, embed_model=None, api_key=None,
        ...     base_url="http://user:pw@host:8080/v1", profile=ConcurrencyProfile(),
        ...     sources={}).endpoint
        'http://host:8080/v1'
        """
        return ", ".join(public_url(url) for url in self.base_urls)

    @property
    def max_concurrent(self) -> MaxConcurrentSpec:
        """The effective concurrency limit ("auto" for the adaptive limit)."""
        return self.profile.max_concurrent

    def rows(self) -> list[SettingRow]:
        """Every effective setting as (name, displayed value, source); secrets masked."""
        values: dict[str, object] = {
            "model": self.model,
            "embed_model": self.embed_model,
            "base_url": ",".join(self.base_urls),
            "api_key": "********" if self.api_key else None,
            **{name: getattr(self.profile, name) for name in _PROFILE_FIELDS},
            **{name: getattr(self.profile.retry, name) for name in _RETRY_FIELDS},
            "limits": public_url(self.limits)
            if isinstance(self.limits, str) and self.limits != "local"
            else self.limits,
            "on_backend_error": self.on_backend_error,
            "cache": _shown_cache(self.cache),
            "cache_mode": self.cache_mode,
        }
        return [(name, str(values[name]), self.sources[name]) for name in SETTING_NAMES]


def _shown_cache(cache: object) -> object:
    """The cache setting for display: a Redis URL without its password."""
    if cache is None:
        return "off"
    if isinstance(cache, str) and "://" in cache:
        return public_url(cache)
    return cache


def _describe_errors(error: ValidationError, name_of: Callable[[str], str]) -> str:
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


def _env_layer(prefix: str) -> dict[str, Any]:
    if not any(key.upper().startswith(prefix) for key in os.environ):
        return {}
    try:
        layer = _EnvLayer(_env_prefix=prefix)
    except ValidationError as error:
        raise ConfigurationError(
            "invalid environment: "
            + _describe_errors(error, lambda field: f"{prefix}{field.upper()}")
        ) from None
    return {name: getattr(layer, name) for name in layer.model_fields_set}


def _native_layer(native: Mapping[str, str]) -> dict[str, Any]:
    """Values from the provider's own variables, validated like everything else.

    An empty value, or "0" for a concurrency hint (Ollama's "server default"), counts as unset.
    """
    raw = {
        field: os.environ[var]
        for field, var in native.items()
        if os.environ.get(var, "").strip() not in ("", "0" if field == "max_concurrent" else "")
    }
    if not raw:
        return {}
    try:
        validated = _ArgumentsModel(**raw)
    except ValidationError as error:
        raise ConfigurationError(
            "invalid environment: " + _describe_errors(error, lambda field: native[field])
        ) from None
    return {name: getattr(validated, name) for name in raw}


def _checked_urls(
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


def resolve_settings(
    provider: str,
    arguments: Mapping[str, object],
    *,
    native_env: Mapping[str, str],
    default_base_url: str,
    default_profile: Callable[[str], ConcurrencyProfile],
    profile: ConcurrencyProfile | None = None,
    normalize_url: Callable[[str], str] = str,
) -> ClientSettings:
    """Merge arguments, environment and profile defaults; raise `ConfigurationError` on bad values.

    `native_env` maps setting names to the provider's own variables (e.g.
    `{"base_url": "OLLAMA_HOST"}`); `default_profile(base_url)` picks the profile when no
    `profile` argument is given.
    """
    given = {k: v for k, v in arguments.items() if v is not None}
    try:
        checked = _ArgumentsModel(**given)
    except ValidationError as error:
        raise ConfigurationError(
            "invalid argument: " + _describe_errors(error, lambda field: field)
        ) from None

    provider_prefix = f"LLMCLIENT_{provider.upper()}_"
    layers: list[tuple[dict[str, Any], Callable[[str], str]]] = [
        ({name: getattr(checked, name) for name in given}, lambda _: "argument"),
        (_env_layer(provider_prefix), lambda n: f"env {provider_prefix}{n.upper()}"),
        (_env_layer("LLMCLIENT_"), lambda n: f"env LLMCLIENT_{n.upper()}"),
        (_native_layer(native_env), lambda n: f"env {native_env[n]}"),
    ]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer, source in layers:
        for name, value in layer.items():
            if name not in values:
                values[name] = value
                sources[name] = source(name)

    sources.setdefault("base_url", "default")
    base_url, pool = _checked_urls(
        values.get("base_url") or default_base_url, sources, normalize_url
    )
    if "embed_model" not in values and "model" in values:
        sources["embed_model"] = "same as model"
    if profile is None:
        base = default_profile(base_url)
        default_source = f"default ({base.name} profile)"
    else:
        base, default_source = profile, "profile argument"
    for name in SETTING_NAMES:
        sources.setdefault(
            name,
            default_source
            if name in _PROFILE_FIELDS + _RETRY_FIELDS
            else "default"
            if name in ("limits", "on_backend_error", "cache", "cache_mode")
            else "unset",
        )

    retry = base.retry.model_copy(update={k: values[k] for k in _RETRY_FIELDS if k in values})
    effective = base.model_copy(
        update={**{k: values[k] for k in _PROFILE_FIELDS if k in values}, "retry": retry}
    )
    return ClientSettings(
        provider=provider,
        model=values.get("model"),
        embed_model=values.get("embed_model") or values.get("model"),
        base_url=base_url,
        api_key=values.get("api_key"),
        profile=effective,
        sources=sources,
        limits=values.get("limits", "local"),
        on_backend_error=values.get("on_backend_error", "wait"),
        pool=pool,
        cache=None if values.get("cache") == "off" else values.get("cache"),
        cache_mode=values.get("cache_mode", "replay"),
    )


BUDGET_ENV_PREFIX = "LLMCLIENT_BUDGET_"


class _BudgetEnv(BaseSettings):
    """`LLMCLIENT_BUDGET_TOTAL_TOKENS`, `..._PROMPT_TOKENS`, `..._COMPLETION_TOKENS`, `..._COST`,
    `..._INPUT_PRICE`, `..._OUTPUT_PRICE` and `..._NAME`: a `Budget` for every client."""

    model_config = SettingsConfigDict(
        env_prefix=BUDGET_ENV_PREFIX, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    total_tokens: float | None = None
    prompt_tokens: float | None = None
    completion_tokens: float | None = None
    cost: float | None = None
    input_price: float | None = None
    output_price: float | None = None
    name: str = "budget"


def budget_from_env() -> Budget | None:
    """The `Budget` the `LLMCLIENT_BUDGET_*` variables set, or None when none is set; a bad
    value raises `ConfigurationError` naming the variable."""
    if not any(key.upper().startswith(BUDGET_ENV_PREFIX) for key in os.environ):
        return None
    try:
        env = _BudgetEnv()
    except ValidationError as error:
        raise ConfigurationError(
            "invalid environment: "
            + _describe_errors(error, lambda field: f"{BUDGET_ENV_PREFIX}{field.upper()}")
        ) from None
    given = {name: getattr(env, name) for name in env.model_fields_set}
    if not given.keys() - {"name"}:
        return None
    try:
        return Budget(**given)
    except ConfigurationError as error:
        field, _, rest = error.message.removeprefix("invalid argument: ").partition("=")
        if field in _BudgetEnv.model_fields:
            shown = f"{BUDGET_ENV_PREFIX}{field.upper()}={rest}"
        else:
            shown = error.message.removeprefix("invalid argument: ")
        raise ConfigurationError(f"invalid environment: {shown}") from None
