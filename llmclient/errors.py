"""The public error hierarchy: every error llmclient raises is an `LLMError`.

When retries run out the last error itself is raised, with `attempts` and `elapsed` set, so
`except RateLimitError` works whether or not the request was retried. The tree::

    LLMError
    ├── ConfigurationError (ValueError)   bad argument or environment value; nothing was sent
    ├── LimitsUnavailableError             the shared-limits store (Redis) cannot be reached (fatal)
    ├── BudgetExceededError                a token or cost budget is spent: nothing more is sent
    ├── TransientError                     the server may answer next time: retried
    │   ├── RateLimitError                 429: too many requests or tokens (overload)
    │   ├── ServerBusyError                503: the server's queue is full (overload)
    │   ├── ServerError                    5xx, 408, 409
    │   ├── RequestTimeoutError (TimeoutError)
    │   ├── LLMConnectionError (ConnectionError)   fatal when refused
    │   └── MalformedResponseError         an answer that is not what the API promises
    │       └── IncompleteStreamError      a stream that ended without its end marker
    └── RejectedError                      the server refused this request: never retried
        ├── AuthenticationError            401, 403 (fatal)
        ├── QuotaExceededError             no quota or credit left (fatal)
        ├── InvalidRequestError            400, 404, 422
        └── UnsupportedFeatureError        the provider cannot do it (NotImplementedError)

`overload` marks back-pressure (retried until the policy's deadline, not counted as faults);
a timeout is overload when every slot of the endpoint was taken. `fatal` marks errors that
every other request to the same endpoint would hit too (bad key, empty account, bad
settings): a bulk job stops on them instead of failing item after item.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigurationError",
    "ErrorKind",
    "IncompleteStreamError",
    "InvalidRequestError",
    "LLMConnectionError",
    "LLMError",
    "LimitsUnavailableError",
    "MalformedResponseError",
    "QuotaExceededError",
    "RateLimitError",
    "RejectedError",
    "RequestTimeoutError",
    "ServerBusyError",
    "ServerError",
    "TransientError",
    "UnsupportedFeatureError",
]


class ErrorKind(StrEnum):
    """Machine-readable name of an error's kind (used in logs and `llmclient run` output)."""

    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    SERVER_BUSY = "server_busy"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    MALFORMED_RESPONSE = "malformed_response"
    INCOMPLETE_STREAM = "incomplete_stream"
    AUTHENTICATION = "authentication"
    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_FEATURE = "unsupported_feature"
    CONFIGURATION = "configuration"
    LIMITS_UNAVAILABLE = "limits_unavailable"
    BUDGET_EXCEEDED = "budget_exceeded"
    CANCELLED = "cancelled"


class LLMError(Exception):
    """Base of every error llmclient raises about a provider, a request or its settings."""

    kind: ErrorKind = ErrorKind.SERVER_ERROR
    retryable: bool = False
    overload: bool = False
    fatal: bool = False
    hint: str = ""
    attempts: int | None = None  # attempts made when the client raised it; None if none ran
    elapsed: float | None = None  # seconds from the call to this error, waits included

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        self.endpoint = endpoint
        super().__init__(self._render())

    def _render(self) -> str:
        where = " ".join(p for p in (self.provider, self.endpoint) if p)
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        text = f"{where}{status}: {self.message}" if where or status else self.message
        return f"{text.rstrip('.')}. {self.hint}" if self.hint else text

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[LLMError], message: str, state: dict[str, object]) -> LLMError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._render())
    return error


class ConfigurationError(LLMError, ValueError):
    """An argument or environment variable has an invalid value (raised before any request)."""

    kind = ErrorKind.CONFIGURATION
    fatal = True


class LimitsUnavailableError(LLMError):
    """The store of shared limits (Redis) cannot be reached, so no request may go out."""

    kind = ErrorKind.LIMITS_UNAVAILABLE
    fatal = True
    hint = "start Redis again, or pass limits='local' for per-process limits"


class BudgetExceededError(LLMError):
    """The next request would go over a token or cost budget, so it was not sent.

    `budget` is the `Budget` (its `name` says which) and `spent` what it had spent
    (`BudgetSpent`) when the request was refused. Never retried; `fatal`, since every later
    request of the same budget is refused too.
    """

    kind = ErrorKind.BUDGET_EXCEEDED
    fatal = True
    hint = "Raise the budget (or start a new one) to go on"

    def __init__(self, message: str, *, budget: Any = None, spent: Any = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.spent = spent


class TransientError(LLMError):
    """The server may answer next time (overload, a fault on the way): retried."""

    retryable = True


class RejectedError(LLMError):
    """The server refused this request itself; sending it again cannot help."""

    kind = ErrorKind.INVALID_REQUEST


class RateLimitError(TransientError):
    """The provider answered 429 for too many requests or tokens; retried after a wait."""

    kind = ErrorKind.RATE_LIMITED
    overload = True
    hint = "Lower rpm, tpm or max_concurrent for this endpoint"


class QuotaExceededError(RejectedError):
    """The account has no quota or credit left; retrying cannot help."""

    kind = ErrorKind.QUOTA_EXCEEDED
    fatal = True
    hint = "Check the account's plan and billing; retrying will not help"


class ServerBusyError(TransientError):
    """The server's queue is full (Ollama's 503 "server busy"); retried with backoff."""

    kind = ErrorKind.SERVER_BUSY
    overload = True
    hint = "Lower max_concurrent to the server's parallel slots (e.g. OLLAMA_NUM_PARALLEL)"


class ServerError(TransientError):
    """A transient server-side failure (5xx, 408, 409); retried with backoff."""

    kind = ErrorKind.SERVER_ERROR


class RequestTimeoutError(TransientError, TimeoutError):
    """No answer within the configured timeout; retried."""

    kind = ErrorKind.TIMEOUT
    hint = "Raise timeout (or LLMCLIENT_<PROVIDER>_TIMEOUT) if the model is slow"


class LLMConnectionError(TransientError, ConnectionError):
    """The server could not be reached, or dropped the connection; retried.

    `fatal` when the connection was refused (nothing listens there), not when an answer
    was cut off (one request's problem).
    """

    kind = ErrorKind.CONNECTION

    def __init__(self, message: str, *, refused: bool = False, **facts: Any) -> None:
        super().__init__(message, **facts)
        self.fatal = refused

    hint = "Check that the server is running and the base URL or host is right"


class MalformedResponseError(TransientError):
    """The server's answer could not be parsed; retried."""

    kind = ErrorKind.MALFORMED_RESPONSE


class IncompleteStreamError(MalformedResponseError):
    """A stream ended without its end marker; retried only if no text had been relayed."""

    kind = ErrorKind.INCOMPLETE_STREAM


class AuthenticationError(RejectedError):
    """The server refused the credentials (401/403)."""

    kind = ErrorKind.AUTHENTICATION
    fatal = True
    hint = "Check the API key (argument api_key, or the provider's API key variable)"


class InvalidRequestError(RejectedError):
    """The server rejected the request itself (400, 404, 422): fix the request or model name."""

    kind = ErrorKind.INVALID_REQUEST


class UnsupportedFeatureError(RejectedError, NotImplementedError):
    """The provider cannot do what was asked (for example prompt log-probabilities)."""

    kind = ErrorKind.UNSUPPORTED_FEATURE
