"""`AzureOpenAIClient`: Azure OpenAI through the `openai` SDK's `AsyncAzureOpenAI`.

Also the example of a provider added by subclassing: only the SDK client, the settings and
their checks differ from `OpenAIClient`; requests, answers and errors are the same.
"""

from __future__ import annotations

import os
from typing import ClassVar, Unpack

import openai

from llmclient.clients.base import ClientKeywords
from llmclient.clients.openai import _LOCAL_PLACEHOLDER_KEY, OpenAIClient
from llmclient.config import ClientSettings
from llmclient.errors import ConfigurationError
from llmclient.profiles import is_local_endpoint

__all__ = ["AzureOpenAIClient"]


class AzureOpenAIClient(OpenAIClient):
    """A client for an Azure OpenAI resource; `model` and `embed_model` are deployment names.

    The endpoint (`https://<resource>.openai.azure.com`) comes from `base_url`,
    `LLMCLIENT_AZURE_BASE_URL` or `AZURE_OPENAI_ENDPOINT`; the key from `api_key`,
    `LLMCLIENT_AZURE_API_KEY` or `AZURE_OPENAI_API_KEY`; `api_version` from the argument or
    `OPENAI_API_VERSION`, as in the SDK. The cloud gets the OpenAI cloud profile.
    """

    provider: ClassVar[str] = "azure"
    default_base_url: ClassVar[str] = "https://resource.openai.azure.com"  # never used: refused
    native_env: ClassVar[dict[str, str]] = {
        "api_key": "AZURE_OPENAI_API_KEY",
        "base_url": "AZURE_OPENAI_ENDPOINT",
    }

    def __init__(
        self,
        model: str | None = None,
        *,
        api_version: str | None = None,
        **options: Unpack[ClientKeywords],
    ) -> None:
        self.api_version = api_version or os.environ.get("OPENAI_API_VERSION")
        if not self.api_version:
            raise ConfigurationError(
                "no API version for Azure OpenAI: pass api_version=... (e.g. '2024-10-21') "
                "or set OPENAI_API_VERSION"
            )
        super().__init__(model, **options)

    @classmethod
    def _check_settings(cls, settings: ClientSettings) -> None:
        """An endpoint is required; a key too, unless the endpoint is a local server."""
        if settings.sources["base_url"] == "default":
            raise ConfigurationError(
                "no Azure OpenAI endpoint: pass base_url='https://<resource>.openai.azure.com' "
                "or set AZURE_OPENAI_ENDPOINT or LLMCLIENT_AZURE_BASE_URL"
            )
        if settings.api_key is None and not is_local_endpoint(settings.base_url):
            raise ConfigurationError(
                f"no API key for {settings.endpoint}: pass api_key=..., or set "
                "AZURE_OPENAI_API_KEY or LLMCLIENT_AZURE_API_KEY"
            )

    def _make_sdk(self, base_url: str | None = None) -> openai.AsyncAzureOpenAI:
        # No azure_deployment: the SDK puts each request's `model` in the path
        # (/openai/deployments/<model>/...), so chat and embeddings reach their own deployments.
        key = self.settings.api_key
        return openai.AsyncAzureOpenAI(
            api_key=key.get_secret_value() if key else _LOCAL_PLACEHOLDER_KEY,
            azure_endpoint=base_url or self.settings.base_url,
            api_version=self.api_version,
            timeout=self.profile.timeout,
            max_retries=0,
        )
