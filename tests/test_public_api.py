"""The package's public surface: `__all__`, importability, typing marker, layer boundaries."""

from __future__ import annotations

import ast
import pathlib

import llmclient

PACKAGE = pathlib.Path(llmclient.__file__).parent


def test_all_names_exist_once() -> None:
    assert len(set(llmclient.__all__)) == len(llmclient.__all__)
    for name in llmclient.__all__:
        assert hasattr(llmclient, name), name


def test_core_names_are_public() -> None:
    expected = {
        "BaseLLMClient",
        "OpenAIClient",
        "OllamaClient",
        "ConcurrencyProfile",
        "RetryPolicy",
        "run_concurrent",
        "run_concurrent_sync",
        "BatchRequestManager",
        "LLMError",
        "Token",
        "Completion",
        "Stats",
    }
    assert expected <= set(llmclient.__all__)


def test_py_typed_marker_ships() -> None:
    assert (PACKAGE / "py.typed").is_file()


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_policy_layer_imports_no_upper_layer() -> None:
    policy = ["types.py", "errors.py", "config.py", "profiles.py", "retry.py", "coalesce.py"]
    files = [PACKAGE / name for name in policy] + sorted((PACKAGE / "limits").glob("*.py"))
    upper = (
        "llmclient.clients",
        "llmclient.mapping",
        "llmclient.batching",
        "llmclient.cli",
        "llmclient.testing",
    )
    for path in files:
        bad = {m for m in imported_modules(path) if m.startswith(upper)}
        assert not bad, f"{path.name} imports {bad}"


def test_testing_layer_imports_no_client_code() -> None:
    for path in (PACKAGE / "testing").glob("*.py"):
        bad = {
            m
            for m in imported_modules(path)
            if m.startswith("llmclient") and not m.startswith("llmclient.testing")
        }
        assert not bad, f"{path.name} imports {bad}"
