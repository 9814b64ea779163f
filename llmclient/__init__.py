"""llmclient: provider-aware async LLM clients."""
