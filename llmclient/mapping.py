"""The fan-out helpers' former home, kept so `from llmclient.mapping import ...` goes on working.

Everything lives in :mod:`llmclient.fanout`; these are the same objects.
"""

from llmclient.fanout import (
    DEFAULT_MAX_WORKERS,
    HasWorkerLimit,
    MapOptions,
    ProgressCallback,
    amap,
    client_workers,
    iterate_concurrent,
    run_concurrent,
    run_concurrent_sync,
)

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "HasWorkerLimit",
    "MapOptions",
    "ProgressCallback",
    "amap",
    "client_workers",
    "iterate_concurrent",
    "run_concurrent",
    "run_concurrent_sync",
]
