"""The package's public surface: `__all__`, lazy imports, typing marker, layer boundaries."""

from __future__ import annotations

import ast
import inspect
import pathlib
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

import llmclient
import llmclient.clients

PACKAGE = pathlib.Path(llmclient.__file__).parent
LAZY_PACKAGES = [llmclient, llmclient.clients]


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


# --- exports: exactly the public names, each importable, each visible to type checkers ---------


@pytest.mark.parametrize("package", LAZY_PACKAGES, ids=lambda p: p.__name__)
def test_all_is_exactly_the_public_names(package: ModuleType) -> None:
    """As httpx's test_exported_members: every public name is in `__all__`, and only those.
    Submodules (`llmclient.errors`, ...) are attributes once imported, but not exports."""
    included_private = {"__version__"}
    public = (
        name
        for name in dir(package)  # the lazy names too, through the module's __dir__
        if (not name.startswith("_") or name in included_private)
        and not inspect.ismodule(getattr(package, name))
    )
    assert package.__all__ == sorted(public, key=str.casefold)


@pytest.mark.parametrize("package", LAZY_PACKAGES, ids=lambda p: p.__name__)
def test_each_lazy_name_comes_from_its_module(package: ModuleType) -> None:
    for name, module in package._EXPORTS.items():
        assert getattr(package, name) is getattr(sys.modules[module], name), name
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = package.Nope


def type_checking_imports(path: pathlib.Path) -> dict[str, str]:
    """`name: module` of the `from module import name as name` under `if TYPE_CHECKING:`."""
    found: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        if not (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name | ast.Attribute)  # not `if not TYPE_CHECKING`
            and ast.unparse(node.test).endswith("TYPE_CHECKING")
        ):
            continue
        for statement in node.body:
            assert isinstance(statement, ast.ImportFrom), ast.unparse(statement)
            for alias in statement.names:
                assert alias.asname == alias.name, f"re-export as `{alias.name} as {alias.name}`"
                assert statement.module is not None
                found[alias.name] = statement.module
    return found


@pytest.mark.parametrize("package", LAZY_PACKAGES, ids=lambda p: p.__name__)
def test_type_checkers_see_every_lazy_name(package: ModuleType) -> None:
    """mypy and IDEs read the TYPE_CHECKING imports, Python reads `_EXPORTS`: they must agree."""
    assert package.__file__ is not None
    assert type_checking_imports(pathlib.Path(package.__file__)) == package._EXPORTS


def test_star_import_gives_every_export() -> None:
    namespace: dict[str, object] = {}
    exec("from llmclient import *", namespace)
    assert set(llmclient.__all__) <= namespace.keys()


# --- lazy imports: what `import llmclient` and `llmclient --help` leave out -------------------

HEAVY = ("openai", "ollama", "pydantic_settings")
HELP = "import contextlib, io, llmclient.cli\n" + (
    "with contextlib.redirect_stdout(io.StringIO()):\n    llmclient.cli.main(['--help'])"
)


def heavy_modules_after(code: str) -> set[str]:
    """The provider SDKs and pydantic-settings in sys.modules after `code`, in a fresh Python."""
    script = f"{code}\nimport sys\nprint(*(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import llmclient",
        "from llmclient import LLMError, RetryPolicy, run_concurrent, Completion, __version__",
        "import llmclient.clients.params",
        HELP,
    ],
    ids=["import", "light-names", "clients.params", "cli-help"],
)
def test_provider_sdks_load_only_when_used(code: str) -> None:
    assert heavy_modules_after(code) == set()


def test_using_a_client_loads_its_sdk() -> None:
    assert "openai" in heavy_modules_after("import llmclient\nllmclient.OpenAIClient")
    assert "ollama" in heavy_modules_after("from llmclient.clients import OllamaClient")
    assert "pydantic_settings" in heavy_modules_after("from llmclient import ClientSettings")


# --- layers: what each part of the package may import -----------------------------------------

POLICY = (
    "llmclient.errors",
    "llmclient.config",
    "llmclient._config_checks",
    "llmclient._config_budget",
    "llmclient.profiles",
    "llmclient.retry",
    "llmclient.types",
    "llmclient._messages",
    "llmclient.coalesce",
    "llmclient.limits",
    "llmclient._pipeline",
    "llmclient._attempt",
    "llmclient.telemetry",
    "llmclient._version",
    "llmclient._runner",
    "llmclient._durable",
    "llmclient.cache",
)
CLIENTS = ("llmclient.clients",)
HELPERS = (
    "llmclient.fanout",
    "llmclient.mapping",
    "llmclient.batch",
    "llmclient.probing",
    "llmclient.sync",
)
FACES = ("llmclient.cli", "llmclient.testing", "llmclient.compat", "llmclient.batching")
LAYERS: dict[tuple[str, ...], tuple[str, ...]] = {
    # modules under these prefixes: may import nothing under these
    POLICY: (*CLIENTS, *HELPERS, *FACES),
    CLIENTS: (*HELPERS, *FACES),
    HELPERS: FACES,
    ("llmclient.testing",): CLIENTS,
    # a top layer like cli: clients and helpers, under another library's names
    ("llmclient.compat",): ("llmclient.cli", "llmclient.testing"),
    # an old module path that re-exports a compat name, as compat may
    ("llmclient.batching",): ("llmclient.cli", "llmclient.testing"),
}


TOP = "llmclient"  # the package's `__init__`: it imports every layer, so no layer imports it


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module `path` imports, anywhere (inside functions and TYPE_CHECKING blocks too),
    relative imports resolved; `from llmclient import Name` counts as the module defining Name."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            base = ".".join(p for p in (base, node.module or "") if p)
            names.add(base)
            for alias in node.names:
                if base == "llmclient" and alias.name in llmclient._EXPORTS:
                    names.add(llmclient._EXPORTS[alias.name])
                elif base == "llmclient" and not is_submodule(alias.name):
                    names.add(TOP)  # a name `llmclient/__init__.py` itself defines
                else:  # `from package import submodule`
                    names.add(f"{base}.{alias.name}")
    return names


def is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def layered_modules() -> list[Any]:
    cases: list[Any] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        forbidden = next((f for layer, f in LAYERS.items() if within(module, layer)), None)
        if forbidden is None:
            continue
        cases.append(pytest.param(path, forbidden, id=module))
    return cases


@pytest.mark.parametrize(("path", "forbidden"), layered_modules())
def test_layer_imports_nothing_above_it(path: pathlib.Path, forbidden: tuple[str, ...]) -> None:
    bad = {m for m in imported_modules(path) if m == TOP or within(m, forbidden)}
    assert not bad, f"{module_name(path)} imports {sorted(bad)}"


def test_every_policy_module_is_checked() -> None:
    checked = {case.id for case in layered_modules()}
    assert set(POLICY) <= checked
    assert {
        "llmclient.clients.openai",
        "llmclient.testing.server",
        "llmclient.compat.graphgen",
        "llmclient.compat.batching",
        "llmclient.batching",
        "llmclient.fanout.workers",
        "llmclient.mapping",
        "llmclient.batch._job",
        "llmclient.batch._files",
        "llmclient.batch._polling",
        "llmclient.batch._rows",
        "llmclient.batch._types",
        "llmclient.limits._spend_caps",
        "llmclient.limits._spend_tracker",
        "llmclient.limits._spend_hooks",
    } <= checked


def test_llmclient_mapping_is_an_alias_of_fanout() -> None:
    """The fan-out helpers' former module still imports them: the same objects."""
    import llmclient.fanout
    import llmclient.mapping

    assert llmclient.mapping.__all__ == llmclient.fanout.__all__
    for name in llmclient.fanout.__all__:
        assert getattr(llmclient.mapping, name) is getattr(llmclient.fanout, name), name


def test_testing_layer_imports_no_client_code() -> None:
    """Stricter than the layer table: the simulator imports nothing of llmclient but itself."""
    for path in (PACKAGE / "testing").glob("*.py"):
        bad = {
            m
            for m in imported_modules(path)
            if within(m, ("llmclient",)) and not within(m, ("llmclient.testing",))
        }
        assert not bad, f"{path.name} imports {bad}"


def test_batch_request_manager_lives_in_compat_and_keeps_its_old_paths() -> None:
    import llmclient.batching
    import llmclient.compat.batching

    manager = llmclient.compat.batching.BatchRequestManager
    assert llmclient.BatchRequestManager is manager
    assert llmclient.batching.BatchRequestManager is manager


def test_capacity_probe_is_the_old_name_of_capacity_question() -> None:
    from llmclient.limits import endpoint

    assert endpoint.CapacityProbe is endpoint.CapacityQuestion
    assert "CapacityProbe" in endpoint.__all__
