"""Effective client settings from arguments, environment and profile, with where each came from.

Precedence, highest first: constructor argument > `LLMCLIENT_<PROVIDER>_<SETTING>` >
`LLMCLIENT_<SETTING>` > the provider's native variable (`OLLAMA_HOST`, `OLLAMA_NUM_PARALLEL`,
`OPENAI_API_KEY`, `OPENAI_BASE_URL`, ...) > the profile's default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypedDict, get_type_hints

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

from llmclient._config_budget import BUDGET_ENV_PREFIX, budget_from_env
from llmclient._config_checks import (
    Cache,
    Limits,
    checked_urls,
    describe_errors,
    parse_base_url,
)
from llmclient.cache import CacheMode
from llmclient.errors import ConfigurationError
from llmclient.limits.backends import public_url
from llmclient.limits.pool import EndpointPool
from llmclient.profiles import ConcurrencyProfile, MaxConcurrent, MaxConcurrentSpec

NonEmptyStr = Annotated[str, Field(min_length=1)]

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


BaseUrl = Annotated[str | Sequence[str] | EndpointPool, PlainValidator(parse_base_url)]
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


def _env_layer(prefix: str) -> dict[str, Any]:
    if not any(key.upper().startswith(prefix) for key in os.environ):
        return {}
    try:
        layer = _EnvLayer(_env_prefix=prefix)
    except ValidationError as error:
        raise ConfigurationError(
            "invalid environment: "
            + describe_errors(error, lambda field: f"{prefix}{field.upper()}")
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
            "invalid environment: " + describe_errors(error, lambda field: native[field])
        ) from None
    return {name: getattr(validated, name) for name in raw}


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
            "invalid argument: " + describe_errors(error, lambda field: field)
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
    base_url, pool = checked_urls(
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
