"""llmclient: provider-aware async LLM clients that own their server's concurrency, rate and
retry policy, with helpers for mapping work over them.

Public names are imported on first use (PEP 562), so `import llmclient` does not pay for the
provider SDKs, pydantic-settings or the clients until a program touches them. To add a public
name: one line in `_EXPORTS` and the same import in the `TYPE_CHECKING` block below (for type
checkers and IDEs); tests/test_public_api.py checks that the two agree.
"""

import typing as _typing

from llmclient._lazy import lazy_exports as _lazy_exports
from llmclient._version import __version__ as __version__

_EXPORTS: dict[str, str] = {
    # name: module that defines it
    "AuthenticationError": "llmclient.errors",
    "AzureOpenAIClient": "llmclient.clients.azure",
    "BaseLLMClient": "llmclient.clients.base",
    "BatchFailedError": "llmclient.batch",
    "BatchJob": "llmclient.batch",
    "BatchRequest": "llmclient.batch",
    "BatchResult": "llmclient.batch",
    "BatchRowError": "llmclient.batch",
    "BatchRequestManager": "llmclient.compat.batching",
    "Budget": "llmclient.limits",
    "BudgetExceededError": "llmclient.errors",
    "BudgetSpent": "llmclient.limits",
    "BudgetTracker": "llmclient.limits",
    "CacheMode": "llmclient.cache",
    "CacheStore": "llmclient.cache",
    "ChatRequest": "llmclient.clients.params",
    "client_for": "llmclient.clients.registry",
    "ClientSettings": "llmclient.config",
    "Completion": "llmclient.types",
    "ConcurrencyProfile": "llmclient.profiles",
    "ConfigurationError": "llmclient.errors",
    "EndpointPool": "llmclient.limits",
    "ServerCapacity": "llmclient.limits",
    "EndpointStats": "llmclient.limits",
    "ErrorKind": "llmclient.errors",
    "IncompleteStreamError": "llmclient.errors",
    "InvalidRequestError": "llmclient.errors",
    "FixedLimit": "llmclient.limits",
    "iterate_concurrent": "llmclient.fanout",
    "LatencyLimit": "llmclient.limits",
    "Limit": "llmclient.limits",
    "LimitBackend": "llmclient.limits",
    "LLMConnectionError": "llmclient.errors",
    "LLMError": "llmclient.errors",
    "LimitsUnavailableError": "llmclient.errors",
    "LOCAL_PROFILE": "llmclient.profiles",
    "MalformedResponseError": "llmclient.errors",
    "Message": "llmclient.types",
    "OLLAMA_PROFILE": "llmclient.profiles",
    "Observer": "llmclient.telemetry",
    "OllamaClient": "llmclient.clients.ollama",
    "OPENAI_PROFILE": "llmclient.profiles",
    "OpenAIClient": "llmclient.clients.openai",
    "Outcome": "llmclient.limits",
    "probe": "llmclient.probing",
    "ProbeLevel": "llmclient.probing",
    "ProbeReport": "llmclient.probing",
    "ProgressCallback": "llmclient.fanout",
    "QuotaExceededError": "llmclient.errors",
    "RateLimitError": "llmclient.errors",
    "RedisBackend": "llmclient.limits.backends.redis",
    "RedisCache": "llmclient.cache.redis",
    "register_provider": "llmclient.clients.registry",
    "RejectedError": "llmclient.errors",
    "RequestTimeoutError": "llmclient.errors",
    "RetryPolicy": "llmclient.profiles",
    "run_concurrent": "llmclient.fanout",
    "run_concurrent_sync": "llmclient.fanout",
    "SamplingParams": "llmclient.clients.params",
    "ServerBusyError": "llmclient.errors",
    "ServerError": "llmclient.errors",
    "SQLiteCache": "llmclient.cache",
    "Stats": "llmclient.types",
    "SyncAzureOpenAIClient": "llmclient.sync",
    "SyncClient": "llmclient.sync",
    "SyncOllamaClient": "llmclient.sync",
    "SyncOpenAIClient": "llmclient.sync",
    "SyncTextStream": "llmclient.sync",
    "StreamEnd": "llmclient.types",
    "submit_batch_job": "llmclient.batch",
    "TextStream": "llmclient.types",
    "Token": "llmclient.types",
    "Tool": "llmclient.types",
    "ToolCall": "llmclient.types",
    "TextPart": "llmclient.types",
    "ImagePart": "llmclient.types",
    "image": "llmclient.types",
    "text": "llmclient.types",
    "TransientError": "llmclient.errors",
    "UnsupportedFeatureError": "llmclient.errors",
    "Usage": "llmclient.types",
    "validate_params": "llmclient.clients.params",
}

__all__ = sorted([*_EXPORTS, "__version__"], key=str.casefold)

if _typing.TYPE_CHECKING:
    from llmclient.batch import BatchFailedError as BatchFailedError
    from llmclient.batch import BatchJob as BatchJob
    from llmclient.batch import BatchRequest as BatchRequest
    from llmclient.batch import BatchResult as BatchResult
    from llmclient.batch import BatchRowError as BatchRowError
    from llmclient.batch import submit_batch_job as submit_batch_job
    from llmclient.cache import CacheMode as CacheMode
    from llmclient.cache import CacheStore as CacheStore
    from llmclient.cache import SQLiteCache as SQLiteCache
    from llmclient.cache.redis import RedisCache as RedisCache
    from llmclient.clients.azure import AzureOpenAIClient as AzureOpenAIClient
    from llmclient.clients.base import BaseLLMClient as BaseLLMClient
    from llmclient.clients.ollama import OllamaClient as OllamaClient
    from llmclient.clients.openai import OpenAIClient as OpenAIClient
    from llmclient.clients.params import ChatRequest as ChatRequest
    from llmclient.clients.params import SamplingParams as SamplingParams
    from llmclient.clients.params import validate_params as validate_params
    from llmclient.clients.registry import client_for as client_for
    from llmclient.clients.registry import register_provider as register_provider
    from llmclient.compat.batching import BatchRequestManager as BatchRequestManager
    from llmclient.config import ClientSettings as ClientSettings
    from llmclient.errors import AuthenticationError as AuthenticationError
    from llmclient.errors import BudgetExceededError as BudgetExceededError
    from llmclient.errors import ConfigurationError as ConfigurationError
    from llmclient.errors import ErrorKind as ErrorKind
    from llmclient.errors import IncompleteStreamError as IncompleteStreamError
    from llmclient.errors import InvalidRequestError as InvalidRequestError
    from llmclient.errors import LimitsUnavailableError as LimitsUnavailableError
    from llmclient.errors import LLMConnectionError as LLMConnectionError
    from llmclient.errors import LLMError as LLMError
    from llmclient.errors import MalformedResponseError as MalformedResponseError
    from llmclient.errors import QuotaExceededError as QuotaExceededError
    from llmclient.errors import RateLimitError as RateLimitError
    from llmclient.errors import RejectedError as RejectedError
    from llmclient.errors import RequestTimeoutError as RequestTimeoutError
    from llmclient.errors import ServerBusyError as ServerBusyError
    from llmclient.errors import ServerError as ServerError
    from llmclient.errors import TransientError as TransientError
    from llmclient.errors import UnsupportedFeatureError as UnsupportedFeatureError
    from llmclient.fanout import ProgressCallback as ProgressCallback
    from llmclient.fanout import iterate_concurrent as iterate_concurrent
    from llmclient.fanout import run_concurrent as run_concurrent
    from llmclient.fanout import run_concurrent_sync as run_concurrent_sync
    from llmclient.limits import Budget as Budget
    from llmclient.limits import BudgetSpent as BudgetSpent
    from llmclient.limits import BudgetTracker as BudgetTracker
    from llmclient.limits import EndpointPool as EndpointPool
    from llmclient.limits import EndpointStats as EndpointStats
    from llmclient.limits import FixedLimit as FixedLimit
    from llmclient.limits import LatencyLimit as LatencyLimit
    from llmclient.limits import Limit as Limit
    from llmclient.limits import LimitBackend as LimitBackend
    from llmclient.limits import Outcome as Outcome
    from llmclient.limits import ServerCapacity as ServerCapacity
    from llmclient.limits.backends.redis import RedisBackend as RedisBackend
    from llmclient.probing import ProbeLevel as ProbeLevel
    from llmclient.probing import ProbeReport as ProbeReport
    from llmclient.probing import probe as probe
    from llmclient.profiles import LOCAL_PROFILE as LOCAL_PROFILE
    from llmclient.profiles import OLLAMA_PROFILE as OLLAMA_PROFILE
    from llmclient.profiles import OPENAI_PROFILE as OPENAI_PROFILE
    from llmclient.profiles import ConcurrencyProfile as ConcurrencyProfile
    from llmclient.profiles import RetryPolicy as RetryPolicy
    from llmclient.sync import SyncAzureOpenAIClient as SyncAzureOpenAIClient
    from llmclient.sync import SyncClient as SyncClient
    from llmclient.sync import SyncOllamaClient as SyncOllamaClient
    from llmclient.sync import SyncOpenAIClient as SyncOpenAIClient
    from llmclient.sync import SyncTextStream as SyncTextStream
    from llmclient.telemetry import Observer as Observer
    from llmclient.types import Completion as Completion
    from llmclient.types import ImagePart as ImagePart
    from llmclient.types import Message as Message
    from llmclient.types import Stats as Stats
    from llmclient.types import StreamEnd as StreamEnd
    from llmclient.types import TextPart as TextPart
    from llmclient.types import TextStream as TextStream
    from llmclient.types import Token as Token
    from llmclient.types import Tool as Tool
    from llmclient.types import ToolCall as ToolCall
    from llmclient.types import Usage as Usage
    from llmclient.types import image as image
    from llmclient.types import text as text


_load, __dir__ = _lazy_exports(__name__, globals(), _EXPORTS)

# Hidden from type checkers: they see the imports above, and a module `__getattr__` would make
# them accept any misspelt attribute.
if not _typing.TYPE_CHECKING:
    __getattr__ = _load
