"""`AzureOpenAIClient` through the real `AsyncAzureOpenAI` over loopback, against the simulator."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx2
import pytest

from llmclient import (
    AzureOpenAIClient,
    ConcurrencyProfile,
    ConfigurationError,
    OpenAIClient,
    client_for,
)
from llmclient.clients.registry import provider_class
from llmclient.testing import SimulatedServer
from llmclient.testing._http import Request, Responder
from tests.conftest import FAST_RETRY

KEY = "azure-secret-key-123"
VERSION = "2024-10-21"
CHAT = "/openai/deployments/sim-model/chat/completions"
EMBED = "/openai/deployments/sim-embed/embeddings"


class RecordingServer(SimulatedServer):
    """The simulator, keeping every request as it received it (path and headers)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.received: list[Request] = []

    async def _handle(self, request: Request, responder: Responder) -> None:
        self.received.append(request)
        await super()._handle(request, responder)


@pytest.fixture(autouse=True)
def no_azure_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_AD_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def server() -> Any:
    async with RecordingServer(latency=0.001) as simulated:
        yield simulated


def make_client(server: SimulatedServer, **options: Any) -> AzureOpenAIClient:
    options.setdefault("profile", ConcurrencyProfile(name="test", retry=FAST_RETRY))
    return AzureOpenAIClient(
        "sim-model",
        base_url=server.url,
        api_key=KEY,
        api_version=VERSION,
        embed_model="sim-embed",
        **options,
    )


def record_urls(client: AzureOpenAIClient) -> list[httpx2.URL]:
    """The URLs the SDK puts on the wire (the simulator's parser drops query strings)."""
    urls: list[httpx2.URL] = []

    async def hook(request: httpx2.Request) -> None:
        urls.append(request.url)

    client._sdk._client.event_hooks["request"].append(hook)
    return urls


async def test_answer_stream_and_embed_reach_the_deployment_paths(server: RecordingServer) -> None:
    async with make_client(server) as client:
        urls = record_urls(client)
        answer = await client.generate_answer("hello azure")
        async with client.stream("stream this please") as deltas:
            streamed = "".join([delta async for delta in deltas])
        vectors = await client.embed(["a", "b"])
    assert answer and streamed
    assert len(vectors) == 2 and len(vectors[0]) == 8
    assert [r.path for r in server.received] == [CHAT, CHAT, EMBED]
    assert server.stats.completed == 3
    assert all(r.header("api-key") == KEY for r in server.received)
    assert all(r.header("authorization") is None for r in server.received)
    assert [url.path for url in urls] == [CHAT, CHAT, EMBED]
    assert all(url.params.get("api-version") == VERSION for url in urls)


async def test_api_version_defaults_to_the_sdk_variable(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-01-01-preview")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    client = client_for("azure", "sim-model")
    assert isinstance(client, AzureOpenAIClient) and isinstance(client, OpenAIClient)
    assert client.api_version == "2025-01-01-preview"
    assert client.settings.sources["base_url"] == "env AZURE_OPENAI_ENDPOINT"
    async with client:
        urls = record_urls(client)
        assert await client.generate_answer("hi")
    assert urls[0].params["api-version"] == "2025-01-01-preview"
    assert server.received[0].header("api-key") == KEY


def test_registered_by_name_without_import() -> None:
    assert provider_class("azure") is AzureOpenAIClient
    code = (
        "import sys; from llmclient.clients import registry; "
        "assert 'azure' in registry.provider_names(); "
        "assert 'llmclient.clients.azure' not in sys.modules; "
        "assert registry.provider_class('azure').__name__ == 'AzureOpenAIClient'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_api_version_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"api_version.*OPENAI_API_VERSION"):
        AzureOpenAIClient("gpt-4o", base_url="https://x.openai.azure.com", api_key=KEY)


def test_missing_endpoint_or_cloud_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        AzureOpenAIClient("gpt-4o", api_key=KEY, api_version=VERSION)
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_API_KEY"):
        AzureOpenAIClient("gpt-4o", base_url="https://x.openai.azure.com", api_version=VERSION)


def test_cloud_endpoint_gets_the_openai_profile_and_hides_the_key() -> None:
    client = AzureOpenAIClient(
        "gpt-4o", base_url="https://x.openai.azure.com/", api_key=KEY, api_version=VERSION
    )
    assert client.profile.name == "openai"
    assert client.endpoint_name == "https://x.openai.azure.com"
    assert KEY not in repr(client) and KEY not in str(client.settings)
    assert KEY not in repr(client.settings)
