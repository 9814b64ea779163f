"""GraphGen's client layer on llmclient: its `init_llm` way of building clients, with the
classes imported from `llmclient.compat.graphgen` where GraphGen imports its own.

Run it against any OpenAI-compatible server (or `llmclient simulate`):

    SYNTHESIZER_BACKEND=openai_api SYNTHESIZER_MODEL=llama3.2 \
    SYNTHESIZER_BASE_URL=http://127.0.0.1:11434/v1 python examples/graphgen_migration.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llmclient import BatchRequestManager
from llmclient.compat.graphgen import HTTPClient, OllamaClient, OpenAIClient, run_concurrent


def init_llm(prefix: str) -> OpenAIClient | OllamaClient:
    """As GraphGen's init_llm: the `<PREFIX>_*` variables, lowercased, are the keywords
    (`<PREFIX>_REQUEST_LIMIT=true` turns on GraphGen's RPM/TPM limits, now the client's)."""
    config: dict[str, Any] = {
        name[len(prefix) :].lower(): value
        for name, value in os.environ.items()
        if name.startswith(prefix)
    }
    backend = config.pop("backend")
    if backend == "http_api":
        return HTTPClient(**config)
    if backend == "ollama_api":
        return OllamaClient(**config)
    return OpenAIClient(**config, backend=backend)


def extract_entities(client: OpenAIClient | OllamaClient, chunks: list[str]) -> list[str | None]:
    """GraphGen's run_concurrent over chunks, bounded by the client; a failure becomes None."""
    prompts = [f"Extract the entities of: {chunk}" for chunk in chunks]
    return run_concurrent(client.generate_answer, prompts, desc="extracting")


async def answer_questions(client: OpenAIClient | OllamaClient, questions: list[str]) -> list[str]:
    """GraphGen's BatchRequestManager: groups of 4, each request under the client's limit."""
    async with BatchRequestManager(client, batch_size=4, max_wait_time=0.1) as manager:
        calls = (manager.add_request(q, extra_params={"max_tokens": 64}) for q in questions)
        return list(await asyncio.gather(*calls))


def main() -> dict[str, Any]:
    client = init_llm("SYNTHESIZER_")
    chunks = [f"chunk {i}: Ada Lovelace wrote the first program." for i in range(12)]
    entities = extract_entities(client, chunks)
    answers = asyncio.run(answer_questions(client, [f"question {i}" for i in range(6)]))
    stats = client.stats
    print(f"{sum(e is not None for e in entities)}/{len(chunks)} chunks, {len(answers)} answers")
    print(f"completed {stats.completed}, failed {stats.failed}, tokens {stats.total_tokens}")
    return {"entities": entities, "answers": answers, "stats": stats, "client": client}


if __name__ == "__main__":
    main()
