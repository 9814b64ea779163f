"""Drop-in faces of llmclient for code written against another library's client layer.

`llmclient.compat.graphgen`: GraphGen's API clients, `run_concurrent`, `Token` and limiters,
with GraphGen's signatures and defaults, on llmclient's clients and helpers.
`llmclient.compat.batching`: GraphGen's `BatchRequestManager`, also importable as
`llmclient.BatchRequestManager` and from `llmclient.batching`.
"""
