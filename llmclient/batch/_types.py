"""A batch job's requests, results and errors, and the Batch API's limits."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmclient.errors import ConfigurationError, ErrorKind, LLMError
from llmclient.types import Completion, MessageInput

__all__ = [
    "ENDPOINT",
    "MAX_BYTES",
    "MAX_REQUESTS",
    "TERMINAL",
    "BatchFailedError",
    "BatchRequest",
    "BatchResult",
    "BatchRowError",
    "OnCancel",
    "Retry",
    "check_choice",
    "check_positive",
    "id_key",
]

MAX_REQUESTS = 50_000  # OpenAI's limit of requests per batch input file
MAX_BYTES = 200_000_000  # and of bytes per file (200 MB)
ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
Retry = Literal["online", "batch", "none"]
OnCancel = Literal["report", "resubmit"]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request of a batch job: its id (unique in the job), prompt or messages, and the
    call's keywords (sampling parameters, `model`) as `generate` takes them."""

    id: str | int
    prompt: str | Sequence[MessageInput]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The one outcome of a request: a `completion`, or an `error`.

    `batch_id` names the batch that answered it; None when it was answered online (a retry of
    a row the batch failed). A completion's `latency` is its batch's time from creation to
    its end.
    """

    id: str | int
    completion: Completion | None = None
    error: Exception | None = None
    batch_id: str | None = None


class BatchFailedError(LLMError):
    """OpenAI refused a batch's input file (status "failed"); `errors` holds its reasons,
    each a dict of `code`, `message`, `line` and `param`."""

    kind = ErrorKind.INVALID_REQUEST
    fatal = True

    def __init__(self, batch_id: str, errors: list[dict[str, Any]], **kwargs: Any) -> None:
        self.batch_id = batch_id
        self.errors = errors
        shown = "; ".join(
            f"line {e.get('line')}: {e.get('code')}: {e.get('message')}"
            if e.get("line") is not None
            else f"{e.get('code')}: {e.get('message')}"
            for e in errors[:3]
        )
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(f"batch {batch_id} failed: {shown or 'no reason given'}{more}", **kwargs)


class BatchRowError(LLMError):
    """A request its batch never ran: `code` is "batch_expired" (the completion window
    ended first; kind `timeout`) or "batch_cancelled" (kind `cancelled`)."""

    kind = ErrorKind.TIMEOUT

    def __init__(self, code: str, message: str, batch_id: str, **kwargs: Any) -> None:
        self.code = code
        if code == "batch_cancelled":
            self.kind = ErrorKind.CANCELLED
        self.batch_id = batch_id
        super().__init__(f"{message} (batch {batch_id}: {code})", **kwargs)


def id_key(value: str | int) -> str:
    """The key an id is known by (its JSON text, also the rows' `custom_id`): `1` and `"1"`
    are different ids."""
    return json.dumps(value, ensure_ascii=False)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigurationError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def check_positive(name: str, value: object, *, integer: bool = False) -> None:
    number = isinstance(value, int) or (not integer and isinstance(value, float))
    if isinstance(value, bool) or not number or not float(value) > 0:  # type: ignore[arg-type]
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigurationError(f"{name}={value!r}: expected {kind}")
