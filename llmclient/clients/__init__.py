"""Provider clients: the abstract base and the OpenAI and Ollama translations."""

from llmclient.clients.base import BaseLLMClient, ChatRequest, TextStream
from llmclient.clients.ollama import OllamaClient
from llmclient.clients.openai import OpenAIClient
from llmclient.clients.params import SamplingParams

__all__ = [
    "BaseLLMClient",
    "ChatRequest",
    "OllamaClient",
    "OpenAIClient",
    "SamplingParams",
    "TextStream",
]
