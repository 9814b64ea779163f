"""llmclient: provider-aware async LLM clients that own their server's concurrency, rate and
retry policy, with helpers for mapping work over them."""

from llmclient.batching import BatchRequestManager
from llmclient.clients import BaseLLMClient, ChatRequest, OllamaClient, OpenAIClient, TextStream
from llmclient.clients.params import SamplingParams, validate_params
from llmclient.config import ClientSettings
from llmclient.errors import (
    AuthenticationError,
    ConfigurationError,
    ErrorKind,
    InvalidRequestError,
    LLMConnectionError,
    LLMError,
    MalformedResponseError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    RetriesExhaustedError,
    ServerBusyError,
    ServerError,
    UnsupportedFeatureError,
)
from llmclient.limits import LatencyLimit, LimitAlgorithm
from llmclient.mapping import ProgressCallback, run_concurrent, run_concurrent_sync
from llmclient.profiles import (
    LOCAL_PROFILE,
    OLLAMA_PROFILE,
    OPENAI_PROFILE,
    ConcurrencyProfile,
    RetryPolicy,
)
from llmclient.types import Completion, Message, Stats, Token, Usage

__version__ = "0.1.0"

__all__ = [
    "LOCAL_PROFILE",
    "OLLAMA_PROFILE",
    "OPENAI_PROFILE",
    "AuthenticationError",
    "BaseLLMClient",
    "BatchRequestManager",
    "ChatRequest",
    "ClientSettings",
    "Completion",
    "ConcurrencyProfile",
    "ConfigurationError",
    "ErrorKind",
    "InvalidRequestError",
    "LLMConnectionError",
    "LLMError",
    "LatencyLimit",
    "LimitAlgorithm",
    "MalformedResponseError",
    "Message",
    "OllamaClient",
    "OpenAIClient",
    "ProgressCallback",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeoutError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "SamplingParams",
    "ServerBusyError",
    "ServerError",
    "Stats",
    "TextStream",
    "Token",
    "UnsupportedFeatureError",
    "Usage",
    "__version__",
    "run_concurrent",
    "run_concurrent_sync",
    "validate_params",
]
