"""OpenAI's Batch API for many chat requests: half the price, answers within 24 hours.

`submit_batch_job(client, requests, state="job.batch.json")` uploads the requests and makes
the batches; `job.results()` hands out one `BatchResult` per request as the batches end. The
state file records every upload and batch as it is made, so a job started again with it
picks up the batches already paid for. See the Batch API page of the docs.
"""

from llmclient.batch._job import (
    BatchFailedError,
    BatchJob,
    BatchRequest,
    BatchResult,
    BatchRowError,
    submit_batch_job,
)

__all__ = [
    "BatchFailedError",
    "BatchJob",
    "BatchRequest",
    "BatchResult",
    "BatchRowError",
    "submit_batch_job",
]
