"""The old home of `BatchRequestManager`, GraphGen's request collector: it lives in
`llmclient.compat.batching` now, beside the rest of GraphGen's face. Import it from there or
as `llmclient.BatchRequestManager`."""

from llmclient.compat.batching import BatchRequestManager

__all__ = ["BatchRequestManager"]
