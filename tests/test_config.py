"""Settings precedence, provenance and every invalid-value error (no server needed)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from llmclient import (
    ConcurrencyProfile,
    ConfigurationError,
    EndpointPool,
    OllamaClient,
    OpenAIClient,
    RetryPolicy,
)
from llmclient.clients.params import conversation
from llmclient.testing import SimulatedServer

SECRET = "sk-test-SECRET-value-1234567890"


def source(client: OllamaClient | OpenAIClient, name: str) -> str:
    return client.settings.sources[name]


def test_defaults_per_provider() -> None:
    ollama = OllamaClient()
    assert ollama.profile.max_concurrent == 1  # Ollama's OLLAMA_NUM_PARALLEL default
    assert ollama.profile.name == "ollama"
    assert ollama.profile.timeout == 600
    assert source(ollama, "max_concurrent") == "default (ollama profile)"
    cloud = OpenAIClient(api_key=SECRET)
    assert cloud.profile.max_concurrent == 50
    assert cloud.profile.name == "openai"
    local = OpenAIClient(base_url="http://127.0.0.1:8080/v1")
    assert local.profile.name == "local"
    assert local.profile.max_concurrent == 4
    lan = OpenAIClient(base_url="http://192.168.1.20:8000/v1")
    assert lan.profile.name == "local"


def test_precedence_argument_provider_global_native_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "3")
    assert OllamaClient().profile.max_concurrent == 3
    assert source(OllamaClient(), "max_concurrent") == "env OLLAMA_NUM_PARALLEL"
    monkeypatch.setenv("LLMCLIENT_MAX_CONCURRENT", "5")
    assert OllamaClient().profile.max_concurrent == 5
    assert source(OllamaClient(), "max_concurrent") == "env LLMCLIENT_MAX_CONCURRENT"
    monkeypatch.setenv("LLMCLIENT_OLLAMA_MAX_CONCURRENT", "2")
    assert OllamaClient().profile.max_concurrent == 2
    assert source(OllamaClient(), "max_concurrent") == "env LLMCLIENT_OLLAMA_MAX_CONCURRENT"
    client = OllamaClient(max_concurrent=7)
    assert client.profile.max_concurrent == 7
    assert source(client, "max_concurrent") == "argument"


def test_provider_variable_does_not_leak_to_other_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMCLIENT_OPENAI_RPM", "500")
    monkeypatch.setenv("LLMCLIENT_OPENAI_MODEL", "gpt-test")
    openai_client = OpenAIClient(api_key=SECRET)
    assert openai_client.profile.rpm == 500
    assert openai_client.model == "gpt-test"
    assert OllamaClient().profile.rpm is None
    assert OllamaClient().model is None


def test_native_hosts_and_zero_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", ":56789")
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "0")  # Ollama's "server default"
    client = OllamaClient()
    assert client.settings.base_url == "http://127.0.0.1:56789"
    assert client.profile.max_concurrent == 1  # the profile default: Ollama's own, 1
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.0.0.5:8000/v1/")
    local = OpenAIClient()
    assert local.settings.base_url == "http://10.0.0.5:8000/v1"
    assert source(local, "base_url") == "env OPENAI_BASE_URL"


def test_profile_argument_and_overrides() -> None:
    profile = ConcurrencyProfile(name="mine", max_concurrent=9, retry=RetryPolicy(max_attempts=2))
    client = OllamaClient(profile=profile, timeout=3, max_attempts=4, max_elapsed=10)
    assert client.profile.max_concurrent == 9
    assert client.profile.timeout == 3
    assert client.profile.retry.max_attempts == 4
    assert client.profile.retry.max_elapsed == 10
    assert source(client, "max_concurrent") == "profile argument"
    assert source(client, "timeout") == "argument"


def test_auto_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OllamaClient(max_concurrent="auto").profile.max_concurrent == "auto"
    monkeypatch.setenv("LLMCLIENT_OLLAMA_MAX_CONCURRENT", "AUTO")
    assert OllamaClient().profile.max_concurrent == "auto"


@pytest.mark.parametrize(
    ("variable", "value", "phrase"),
    [
        ("LLMCLIENT_OLLAMA_MAX_CONCURRENT", "abc", "positive integer"),
        ("LLMCLIENT_OLLAMA_MAX_CONCURRENT", "0", "positive integer"),
        ("LLMCLIENT_OLLAMA_MAX_CONCURRENT", "-3", "positive integer"),
        ("LLMCLIENT_MAX_CONCURRENT", "2.5", "positive integer"),
        ("OLLAMA_NUM_PARALLEL", "four", "positive integer"),
        ("LLMCLIENT_OLLAMA_RPM", "-1", "greater than 0"),
        ("LLMCLIENT_TPM", "lots", "integer"),
        ("LLMCLIENT_OLLAMA_TIMEOUT", "0", "greater than 0"),
        ("LLMCLIENT_OLLAMA_MAX_ATTEMPTS", "0", "greater than 0"),
        ("LLMCLIENT_MAX_ELAPSED", "soon", "number"),
        ("LLMCLIENT_OLLAMA_SHARE_LIMITS", "maybe", "boolean"),
    ],
)
def test_invalid_environment_names_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, phrase: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        OllamaClient()
    text = str(caught.value)
    assert variable in text
    assert repr(value) in text
    assert phrase in text


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("max_concurrent", 0),
        ("max_concurrent", "many"),
        ("max_concurrent", True),
        ("rpm", -5),
        ("tpm", 0),
        ("timeout", 0),
        ("max_attempts", 0),
        ("max_elapsed", -1.0),
    ],
)
def test_invalid_arguments_name_parameter_and_value(argument: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        OllamaClient(**{argument: value})  # type: ignore[arg-type]
    assert f"{argument}={value!r}" in str(caught.value)


def test_invalid_sampling_parameter_before_any_request() -> None:
    with pytest.raises(ConfigurationError, match=r"temperature='hot'"):
        OllamaClient(params={"temperature": "hot"})
    with pytest.raises(ConfigurationError, match=r"unknown parameter 'tempreature'"):
        OllamaClient(params={"tempreature": 0.1})


def test_openai_cloud_without_key_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIClient(model="gpt-test")


def test_api_key_never_in_repr_rows_or_errors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmclient")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    client = OpenAIClient(model="gpt-test")
    assert SECRET not in repr(client)
    assert SECRET not in repr(client.settings)
    assert SECRET not in str(client.settings.model_dump())
    rows = dict((name, value) for name, value, _ in client.settings.rows())
    assert rows["api_key"] == "********"
    assert client.settings.sources["api_key"] == "env OPENAI_API_KEY"
    monkeypatch.setenv("LLMCLIENT_OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("LLMCLIENT_OPENAI_TIMEOUT", "nope")
    with pytest.raises(ConfigurationError) as caught:
        OpenAIClient(model="gpt-test")
    assert SECRET not in str(caught.value)
    assert SECRET not in caplog.text


async def test_history_must_alternate() -> None:
    async with OllamaClient(model="m", host="127.0.0.1:9") as client:
        with pytest.raises(ValueError, match="history has 1 strings"):
            await client.generate_answer("hi", ["only a user turn"])
    roles = [m.role for m in conversation("q", ["u", "a"])]
    assert roles == ["user", "assistant", "user"]


@pytest.mark.parametrize("host", ["not a url", "ftp://example.com", ":port", "http://a b:1"])
def test_bad_ollama_host_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    with pytest.raises(ConfigurationError, match=f"OLLAMA_HOST={host!r}"):
        OllamaClient("m")


@pytest.mark.parametrize("url", ["not a url", "localhost:8080/v1", "http://", "http://h:99999/v1"])
def test_bad_base_url_argument_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"base_url=.*http:// or https://"):
        OpenAIClient("m", base_url=url)


def test_empty_model_is_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="model=''"):
        OllamaClient("")
    with pytest.raises(ConfigurationError, match="embed_model=''"):
        OllamaClient("m", embed_model="")


async def test_rpm_below_one_a_minute_is_a_real_setting(
    simulated_server: SimulatedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCLIENT_OLLAMA_RPM", "0.5")
    async with OllamaClient("sim-model", host=simulated_server.url) as client:
        assert client.profile.rpm == 0.5
        assert await client.generate_answer("first") == "Simulated reply to: first"
        second = asyncio.ensure_future(client.generate_answer("second"))
        await asyncio.sleep(0.2)
        assert not second.done()  # the next one is two minutes away
        second.cancel()
    assert simulated_server.stats.requests == 1


@pytest.mark.parametrize(
    ("where", "url", "named"),
    [
        ("argument", "http://", "base_url='http://'"),
        ("argument", "https://", "base_url='https://'"),
        ("env", "http://", "OLLAMA_HOST='http://'"),
        ("llmclient-env", "notaurl", "LLMCLIENT_OLLAMA_BASE_URL='notaurl'"),
        ("llmclient-env", "http://", "LLMCLIENT_OLLAMA_BASE_URL='http://'"),
    ],
)
def test_urls_without_a_host_are_refused_naming_where_they_came_from(
    monkeypatch: pytest.MonkeyPatch, where: str, url: str, named: str
) -> None:
    arguments = {"host": url} if where == "argument" else {}
    if where == "env":
        monkeypatch.setenv("OLLAMA_HOST", url)
    if where == "llmclient-env":
        monkeypatch.setenv("LLMCLIENT_OLLAMA_BASE_URL", url)
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        OllamaClient("m", **arguments)


def test_an_empty_host_is_refused_not_taken_for_the_default() -> None:
    with pytest.raises(ConfigurationError, match=r"host='': must be a URL"):
        OllamaClient("m", host="")
    with pytest.raises(ConfigurationError, match=r"host='  '"):
        OllamaClient("m", host="  ")


def test_llmclient_variables_take_whole_urls_and_ollama_host_its_own_forms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu1")  # Ollama's rule: a bare host gets :11434
    assert OllamaClient("m").settings.base_url == "http://gpu1:11434"
    monkeypatch.setenv("LLMCLIENT_OLLAMA_BASE_URL", "http://gpu2:11500")
    assert OllamaClient("m").settings.base_url == "http://gpu2:11500"
    monkeypatch.setenv("LLMCLIENT_OPENAI_BASE_URL", "gpu3:8000/v1")
    with pytest.raises(ConfigurationError, match=r"LLMCLIENT_OPENAI_BASE_URL='gpu3:8000/v1'"):
        OpenAIClient("m")


def test_a_pool_listing_one_url_twice_is_refused() -> None:
    url = "http://127.0.0.1:11434"
    with pytest.raises(ConfigurationError, match=r"endpoints: 'http://127.0.0.1:11434' is listed"):
        EndpointPool([url, url])
    with pytest.raises(ConfigurationError, match=r"listed twice"):
        EndpointPool([url, f" {url} "])
