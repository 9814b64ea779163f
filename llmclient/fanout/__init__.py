"""Fan one async function out over many items: a bounded set of workers pulling items lazily.

`amap` (outcomes in completion order) runs the workers; `run_concurrent` (results in input order,
progress, log lines), `run_concurrent_sync` and `iterate_concurrent` are built on it. It
sizes itself to the client whose method it maps (`HasWorkerLimit`). Named for what it does:
`mapping` read as `collections.abc.Mapping`; `llmclient.mapping` still imports these names.
"""

from llmclient.fanout.reporting import ProgressCallback
from llmclient.fanout.run import MapOptions, iterate_concurrent, run_concurrent, run_concurrent_sync
from llmclient.fanout.sizing import DEFAULT_MAX_WORKERS, HasWorkerLimit, client_workers
from llmclient.fanout.workers import amap

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
