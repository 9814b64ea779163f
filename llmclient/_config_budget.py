"""The `LLMCLIENT_BUDGET_*` variables: a `Budget` for every client (`llmclient.config`
re-exports `BUDGET_ENV_PREFIX` and `budget_from_env`)."""

from __future__ import annotations

import os

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmclient._config_checks import describe_errors
from llmclient.errors import ConfigurationError
from llmclient.limits.spending import Budget

__all__ = ["BUDGET_ENV_PREFIX", "budget_from_env"]

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
            + describe_errors(error, lambda field: f"{BUDGET_ENV_PREFIX}{field.upper()}")
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
