"""What a server's rate-limit headers say is left: parsing only, no I/O and no clock.

Reads OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (resets as Go durations
such as `6m0s`), the IETF `RateLimit` / `RateLimit-Policy` structured fields
(draft-ietf-httpapi-ratelimit-headers), and the older `RateLimit-Limit/-Remaining/-Reset`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Quota", "ServerRates", "parse_go_duration", "parse_rate_headers"]

_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_SF_MEMBER = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[^,;]*)((?:;[^,;]*)*)\s*(?:,|$)')
_OPENAI = "x-ratelimit-"
_PREFIXES = (_OPENAI, "ratelimit")
_FIRST = "xXrR"  # what the names in _PREFIXES start with, checked before lowercasing a name


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit as the server last described it: `remaining` units, back in `reset` seconds.

    `reset` is None when the server did not say; `limit` is the size of the quota, if given.
    """

    remaining: float
    reset: float | None = None
    limit: float | None = None

    @property
    def pace(self) -> float:
        """Units a second that would spend `remaining` exactly by the reset (inf: no hurry)."""
        if self.remaining <= 0:
            return 0.0
        if self.reset is None or self.reset <= 0:
            return math.inf
        return self.remaining / self.reset


@dataclass(frozen=True, slots=True)
class ServerRates:
    """The request and token quotas one response announced (None: not announced)."""

    requests: Quota | None = None
    tokens: Quota | None = None


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration (`time.Duration.String()`), or None if `text` is not one.

    >>> parse_go_duration("6m0s"), parse_go_duration("20ms"), parse_go_duration("1h2m3.5s")
    (360.0, 0.02, 3723.5)
    >>> [parse_go_duration(text) for text in ("1s", "0", "1.5", "soon")]
    [1.0, 0.0, 1.5, None]
    """
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))  # a bare number: seconds (some gateways send these)
    except ValueError:
        pass
    total, end = 0.0, 0
    for match in _GO_PART.finditer(text):
        if match.start() != end:
            return None
        total += float(match[1]) * _GO_UNITS[match[2]]
        end = match.end()
    return total if end == len(text) and end else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip().strip('"'))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _sf_list(text: str) -> list[tuple[str, dict[str, str]]]:
    """Members of a structured-field list or dictionary: (item or key=value, parameters).

    >>> _sf_list('"default";q=100;w=60, "day";q=1000')
    [('default', {'q': '100', 'w': '60'}), ('day', {'q': '1000'})]
    """
    members = []
    for match in _SF_MEMBER.finditer(text):
        item, params = match[1].strip(), match[2]
        if not item and not params:
            continue
        parsed = {}
        for param in params.split(";")[1:]:
            key, _, value = param.partition("=")
            parsed[key.strip().lower()] = value.strip().strip('"') or "?1"
        members.append((item.strip('"'), parsed))
    return members


def _openai(headers: Mapping[str, str], unit: str) -> Quota | None:
    remaining = _number(headers.get(f"{_OPENAI}remaining-{unit}"))
    if remaining is None:
        return None
    reset_text = headers.get(f"{_OPENAI}reset-{unit}")
    reset = parse_go_duration(reset_text) if reset_text is not None else None
    return Quota(remaining, reset, _number(headers.get(f"{_OPENAI}limit-{unit}")))


def _ietf(headers: Mapping[str, str]) -> dict[str, list[Quota]]:
    """Quotas by unit ("requests", "tokens") from `RateLimit` and `RateLimit-Policy`."""
    found: dict[str, list[Quota]] = {}
    policies = {name: params for name, params in _sf_list(headers.get("ratelimit-policy", ""))}
    members = _sf_list(headers.get("ratelimit", ""))
    fields = dict(item.partition("=")[::2] for item, _ in members if "=" in item)
    if {"remaining", "limit", "reset"} & fields.keys():  # draft 07: limit=10, remaining=1, reset=7
        members = []
        fields = {k.strip().lower(): v for k, v in fields.items()}
    else:
        fields = {}
    for name, params in members:
        remaining = _number(params.get("r"))
        if remaining is None:
            continue
        policy = policies.get(name, {})
        unit = policy.get("qu", "requests")
        quota = Quota(remaining, _number(params.get("t")), _number(policy.get("q")))
        found.setdefault(unit, []).append(quota)
    triple = fields or {
        key: value
        for key in ("limit", "remaining", "reset")
        if (value := headers.get(f"ratelimit-{key}")) is not None
    }
    remaining = _number(triple.get("remaining"))
    if remaining is not None:
        quota = Quota(remaining, _number(triple.get("reset")), _number(triple.get("limit")))
        found.setdefault("requests", []).append(quota)
    return found


def _tightest(quotas: list[Quota]) -> Quota | None:
    """The quota that allows the slowest pace (it binds first)."""
    return min(quotas, key=lambda q: (q.pace, q.remaining), default=None)


def parse_rate_headers(headers: Mapping[str, str]) -> ServerRates | None:
    """The quotas a response's headers announce, or None when they announce none.

    Header names are matched case-insensitively; of several quotas for one unit (a minute's
    and a day's, say) the one allowing the slowest pace is kept.

    >>> parse_rate_headers({"x-ratelimit-limit-requests": "60",
    ...     "x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s"})
    ServerRates(requests=Quota(remaining=59.0, reset=1.0, limit=60.0), tokens=None)
    >>> parse_rate_headers({"RateLimit-Policy": '"default";q=100;w=60',
    ...     "RateLimit": '"default";r=50;t=30'}).requests
    Quota(remaining=50.0, reset=30.0, limit=100.0)
    >>> parse_rate_headers({"RateLimit-Limit": "10", "RateLimit-Remaining": "0",
    ...     "RateLimit-Reset": "7"}).requests
    Quota(remaining=0.0, reset=7.0, limit=10.0)
    >>> parse_rate_headers({"content-type": "application/json"}) is None
    True
    """
    lowered = {  # only the rate-limit headers: most responses carry none, none lowercased
        name: value
        for key, value in headers.items()
        if key[:1] in _FIRST and (name := key.lower()).startswith(_PREFIXES)
    }
    if not lowered:
        return None
    found = _ietf(lowered)
    for unit in ("requests", "tokens"):
        quota = _openai(lowered, unit)
        if quota is not None:
            found.setdefault(unit, []).append(quota)
    requests, tokens = _tightest(found.get("requests", [])), _tightest(found.get("tokens", []))
    if requests is None and tokens is None:
        return None
    return ServerRates(requests, tokens)
