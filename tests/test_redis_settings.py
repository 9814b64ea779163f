"""`RedisBackend` settings are checked when it is made, before any request (no server needed)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llmclient import ConfigurationError, OllamaClient
from llmclient.limits.backends.redis import RedisBackend

URL = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("lease", math.nan),
        ("lease", math.inf),
        ("lease", 0),
        ("lease", -1.0),
        ("lease", 0.01),
        ("wait_timeout", math.nan),
        ("wait_timeout", 0),
        ("wait_timeout", -0.5),
        ("wait_timeout", -math.inf),
        ("prefix", ""),
        ("on_error", "retry"),
    ],
)
def test_a_bad_setting_is_named_with_its_value(setting: str, value: object) -> None:
    options: dict[str, Any] = {setting: value}
    with pytest.raises(ConfigurationError, match=f"{setting}={value!r}"):
        RedisBackend(URL, **options)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("lease", "5"), ("lease", True), ("wait_timeout", None), ("prefix", None), ("prefix", 3)],
)
def test_a_setting_of_the_wrong_type_is_named_with_its_value(setting: str, value: object) -> None:
    options: dict[str, Any] = {setting: value}
    with pytest.raises(TypeError, match=f"{setting}={value!r}"):
        RedisBackend(URL, **options)


def test_waiting_for_redis_without_end_is_allowed() -> None:
    assert RedisBackend(URL, wait_timeout=math.inf).wait_timeout == math.inf


@pytest.mark.parametrize(
    ("url", "shown", "why"),
    [
        ("redis://:pw@127.0.0.1:x/0", "redis://127.0.0.1:?/0", "Port"),
        ("redis://:pw@127.0.0.1:99999/0", "redis://127.0.0.1:?/0", "Port out of range"),
        ("redis://:pw@127.0.0.1:6379/abc", "redis://127.0.0.1:6379/abc", "database 'abc'"),
        ("redis://:pw@127.0.0.1/0?colour=red", "redis://127.0.0.1/0", "'colour'"),
        ("rediss://:pw@127.0.0.1/0?ssl_cert_reqs=maybe", "rediss://127.0.0.1/0", "maybe"),
        ("redis://:pw@[::1/0", "redis://<hidden>", "IPv6"),
        ("redis:/127.0.0.1", "redis:/127.0.0.1", "rediss://"),
    ],
)
def test_a_malformed_url_is_named_without_its_password(url: str, shown: str, why: str) -> None:
    for make in (lambda: RedisBackend(url), lambda: OllamaClient("m", limits=url)):
        with pytest.raises(ConfigurationError) as caught:
            make()
        message = str(caught.value)
        assert f"limits={shown!r}" in message and why in message
        assert "pw" not in message


def test_a_url_that_is_not_text_is_named() -> None:
    with pytest.raises(TypeError, match=r"limits=b'redis://h'"):
        RedisBackend(b"redis://h")  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["redis://h", "redis://h/", "redis://h:6380/15", "unix:///s.sock"])
def test_good_urls_are_accepted(url: str) -> None:
    assert RedisBackend(url).url == url
