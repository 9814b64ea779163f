"""Sampling parameters every provider understands, validated before any request is sent.

Provider-specific extras go in `provider_options` (OpenAI: merged into the request body;
Ollama: merged into `options`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmclient.errors import ConfigurationError

__all__ = ["SamplingParams", "validate_params"]


class SamplingParams(BaseModel):
    """Per-call generation parameters; unset ones are left to the server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    provider_options: dict[str, Any] = Field(default_factory=dict)

    def merged(self, override: SamplingParams) -> SamplingParams:
        """These defaults with every parameter `override` sets replacing them."""
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


def validate_params(params: dict[str, Any]) -> SamplingParams:
    """Check sampling parameters; raise `ConfigurationError` naming each bad one."""
    try:
        return SamplingParams(**params)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else "?"
            if item["type"] == "extra_forbidden":
                known = ", ".join(SamplingParams.model_fields)
                problems.append(f"unknown parameter {name!r} (known: {known})")
            else:
                problems.append(f"{name}={item.get('input')!r}: {item['msg']}")
        raise ConfigurationError("invalid parameter: " + "; ".join(problems)) from None
