"""GraphGen's client layer on llmclient: the same keywords, calls and environment variables.

Where GraphGen wrote `from graphgen.models import OpenAIClient`, this imports llmclient's. Run it
against any OpenAI-compatible server (or `llmclient simulate`):

    SYNTHESIZER_MODEL=llama3.2 SYNTHESIZER_BASE_URL=http://127.0.0.1:11434/v1 \
        python examples/graphgen_migration.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llmclient import BatchRequestManager, OpenAIClient, run_concurrent_sync


def init_llm(prefix: str) -> OpenAIClient:
    """GraphGen's init_llm: its `<PREFIX>_*` variables, read by the caller as before."""
    return OpenAIClient(
        model=os.environ[f"{prefix}_MODEL"],
        base_url=os.environ[f"{prefix}_BASE_URL"],
        api_key=os.environ.get(f"{prefix}_API_KEY"),  # local servers need none
        system_prompt="You are a helpful assistant.",
        temperature=0.0,
        max_tokens=256,
        top_p=0.95,
        # GraphGen's RPM/TPM limiter (request_limit=True): now the client's own, shared by
        # every call and helper that uses this server, and settled from the reported usage.
        rpm=float(os.environ.get(f"{prefix}_RPM", "1000")),
        tpm=int(os.environ.get(f"{prefix}_TPM", "500000")),
    )


def extract_entities(client: OpenAIClient, chunks: list[str]) -> list[str | None]:
    """GraphGen's run_concurrent over chunks, bounded by the client; a failure becomes None."""
    prompts = [f"Extract the entities of: {chunk}" for chunk in chunks]
    return run_concurrent_sync(
        client.generate_answer, prompts, desc="extracting", failed_as_none=True
    )


async def answer_questions(client: OpenAIClient, questions: list[str]) -> list[str]:
    """GraphGen's BatchRequestManager: groups of 4, each request under the client's limit."""
    async with BatchRequestManager(client, batch_size=4, max_wait_time=0.1) as manager:
        calls = (manager.add_request(q, extra_params={"max_tokens": 64}) for q in questions)
        return list(await asyncio.gather(*calls))


def main() -> dict[str, Any]:
    client = init_llm("SYNTHESIZER")
    chunks = [f"chunk {i}: Ada Lovelace wrote the first program." for i in range(12)]
    entities = extract_entities(client, chunks)
    answers = asyncio.run(answer_questions(client, [f"question {i}" for i in range(6)]))
    stats = client.stats
    print(f"{sum(e is not None for e in entities)}/{len(chunks)} chunks, {len(answers)} answers")
    print(f"completed {stats.completed}, failed {stats.failed}, tokens {stats.total_tokens}")
    return {"entities": entities, "answers": answers, "stats": stats}


if __name__ == "__main__":
    main()
