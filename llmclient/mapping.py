"""The fan-out helpers' former home, kept so `from llmclient.mapping import ...` goes on working.

Everything lives in :mod:`llmclient.fanout`; these are the same objects.
"""

import llmclient.fanout
from llmclient.fanout import *  # noqa: F403 (the alias re-exports exactly fanout's names)

__all__ = llmclient.fanout.__all__
