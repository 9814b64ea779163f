#!/usr/bin/env python3
"""Build, provision and run a real llama.cpp ``llama-server`` on loopback for integration tests.

The code lives in ``tests/integration/real_server.py`` (the integration fixtures import it);
this is its command line::

    python scripts/real_server.py [build|model|serve|all] [--cache-dir DIR] [--jobs N]
    python scripts/real_server.py serve --parallel 2 [--embeddings] [--port 8080]

The cache directory is ``$LLMCLIENT_CACHE_DIR`` if set, else
``~/.cache/llmclient/llama.cpp-0.3.36``; see ``--help`` and that module for the details.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's `tests` package

# Every public name too, for callers that load this file by path (benchmarks/bench_real_server.py).
from tests.integration.real_server import *  # noqa: F403
from tests.integration.real_server import main

if __name__ == "__main__":
    sys.exit(main())
