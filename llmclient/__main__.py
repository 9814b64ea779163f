"""`python -m llmclient`: the same command line as the `llmclient` console script."""

from llmclient.cli import main

raise SystemExit(main())
