"""The package's version, in one place: `llmclient.__version__` and the wheel's metadata
(pyproject's `[tool.hatch.version]`) both read it; policy modules import it from here."""

__version__ = "0.1.0"
