"""The public error hierarchy: one `LLMError` base, one class per error kind.

Providers translate their SDK's exceptions into these; the retry policy reads only
`LLMError.retryable` and `LLMError.retry_after`.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ErrorKind",
    "InvalidRequestError",
    "LLMConnectionError",
    "LLMError",
    "MalformedResponseError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeoutError",
    "RetriesExhaustedError",
    "ServerBusyError",
    "ServerError",
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
    AUTHENTICATION = "authentication"
    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_FEATURE = "unsupported_feature"
    RETRIES_EXHAUSTED = "retries_exhausted"
    CONFIGURATION = "configuration"


class LLMError(Exception):
    """Base of every error llmclient raises about a provider, a request or its settings."""

    kind: ErrorKind = ErrorKind.SERVER_ERROR
    retryable: bool = False
    hint: str = ""
    attempts: int | None = None  # attempts made when the client raised it; None if none ran

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


class RateLimitError(LLMError):
    """The provider answered 429 for too many requests or tokens; retried after a wait."""

    kind = ErrorKind.RATE_LIMITED
    retryable = True
    hint = "Lower rpm, tpm or max_concurrent for this endpoint"


class QuotaExceededError(LLMError):
    """The account has no quota or credit left; retrying cannot help."""

    kind = ErrorKind.QUOTA_EXCEEDED
    hint = "Check the account's plan and billing; retrying will not help"


class ServerBusyError(LLMError):
    """The server's queue is full (Ollama's 503 "server busy"); retried with backoff."""

    kind = ErrorKind.SERVER_BUSY
    retryable = True
    hint = "Lower max_concurrent to the server's parallel slots (e.g. OLLAMA_NUM_PARALLEL)"


class ServerError(LLMError):
    """A transient server-side failure (5xx, 408, 409); retried with backoff."""

    kind = ErrorKind.SERVER_ERROR
    retryable = True


class RequestTimeoutError(LLMError, TimeoutError):
    """No answer within the configured timeout; retried."""

    kind = ErrorKind.TIMEOUT
    retryable = True
    hint = "Raise timeout (or LLMCLIENT_<PROVIDER>_TIMEOUT) if the model is slow"


class LLMConnectionError(LLMError, ConnectionError):
    """The server could not be reached or dropped the connection; retried."""

    kind = ErrorKind.CONNECTION
    retryable = True
    hint = "Check that the server is running and the base URL or host is right"


class MalformedResponseError(LLMError):
    """The server's answer could not be parsed; retried."""

    kind = ErrorKind.MALFORMED_RESPONSE
    retryable = True


class AuthenticationError(LLMError):
    """The server refused the credentials (401/403)."""

    kind = ErrorKind.AUTHENTICATION
    hint = "Check the API key (argument api_key, or the provider's API key variable)"


class InvalidRequestError(LLMError):
    """The server rejected the request itself (400, 404, 422): fix the request or model name."""

    kind = ErrorKind.INVALID_REQUEST


class UnsupportedFeatureError(LLMError):
    """The provider cannot do what was asked (for example prompt log-probabilities)."""

    kind = ErrorKind.UNSUPPORTED_FEATURE


class RetriesExhaustedError(LLMError):
    """Every allowed attempt failed with a retryable error; `last_error` holds the final one."""

    kind = ErrorKind.RETRIES_EXHAUSTED
    attempts: int

    def __init__(self, attempts: int, last_error: LLMError, elapsed: float) -> None:
        self.attempts = attempts
        self.last_error = last_error
        self.elapsed = elapsed
        self.hint = last_error.hint
        super().__init__(
            f"gave up after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f}s; "
            f"last error: {last_error.kind}: {last_error.message}",
            provider=last_error.provider,
            status_code=last_error.status_code,
            endpoint=last_error.endpoint,
        )
