"""The installed distribution's metadata: version from one place, project URLs that agree with
the docs site, classifiers that agree with `requires-python`, and the pytest plugin's
dependencies declared in the `testing` extra."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re
import sys
import tomllib
from typing import Any

import pytest

import llmclient

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = pathlib.Path(llmclient.__file__).parent


@pytest.fixture(scope="module")
def metadata() -> importlib.metadata.PackageMetadata:
    return importlib.metadata.metadata("llmclient")


def pyproject() -> Any:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def mkdocs_setting(name: str) -> str:
    found = re.search(rf"^{name}:\s*(\S+)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert found is not None, f"mkdocs.yml has no {name}"
    return found[1]


def test_the_version_comes_from_one_place(metadata: importlib.metadata.PackageMetadata) -> None:
    assert metadata["Version"] == llmclient.__version__
    config = pyproject()
    assert config["project"]["dynamic"] == ["version"]
    assert config["tool"]["hatch"]["version"]["path"] == "llmclient/_version.py"
    assigned = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if re.search(r"^__version__\s*[:=]", path.read_text(), re.M)
    ]
    assert assigned == ["_version.py"]


def test_project_urls_agree_with_the_docs_site(
    metadata: importlib.metadata.PackageMetadata,
) -> None:
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert urls.keys() == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    site, repo = mkdocs_setting("site_url"), mkdocs_setting("repo_url")
    assert urls["Homepage"] == urls["Documentation"] == site
    assert urls["Changelog"] == site + "changelog/"  # the site's page made from CHANGELOG.md
    assert urls["Source"] == repo
    assert urls["Issues"] == repo + "/issues"


def test_classifiers_say_typed_asyncio_and_the_supported_pythons(
    metadata: importlib.metadata.PackageMetadata,
) -> None:
    classifiers = set(metadata.get_all("Classifier") or [])
    assert {
        "Typing :: Typed",
        "Framework :: AsyncIO",
        "Programming Language :: Python :: 3 :: Only",
    } <= classifiers
    assert (PACKAGE / "py.typed").is_file()  # what Typing :: Typed promises
    floor = re.fullmatch(r">=3\.(\d+)", metadata["Requires-Python"] or "")
    assert floor is not None, metadata["Requires-Python"]
    minors = sorted(
        int(found[1])
        for c in classifiers
        if (found := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))
    )
    # from the floor of requires-python up, with no gap
    assert minors == list(range(int(floor[1]), int(floor[1]) + len(minors)))
    assert len(minors) >= 1


def test_the_license_is_one_spdx_expression(metadata: importlib.metadata.PackageMetadata) -> None:
    assert metadata["License-Expression"] == "MIT"
    assert not [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]


def third_party_imports(path: pathlib.Path) -> set[str]:
    """Top-level names of the modules `path` imports that are neither stdlib nor llmclient."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names} - {"llmclient", "__future__"}


def test_the_pytest_plugins_dependencies_are_in_the_testing_extra(
    metadata: importlib.metadata.PackageMetadata,
) -> None:
    assert "testing" in (metadata.get_all("Provides-Extra") or [])
    extra = {
        re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower()
        for requirement in metadata.get_all("Requires-Dist") or []
        if re.search(r"""extra\s*==\s*["']testing["']""", requirement)
    }
    runtime = {
        re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower()
        for requirement in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in requirement
    }
    distributions = importlib.metadata.packages_distributions()
    plugin = PACKAGE / "testing" / "pytest_plugin.py"
    needed = {
        dist.lower() for module in third_party_imports(plugin) for dist in distributions[module]
    }
    assert "pytest-asyncio" in needed  # what the plugin is built on
    assert needed - runtime <= extra
    assert "pytest" in extra  # pytest-asyncio's host, the plugin's too
    # the simulated servers themselves need nothing beyond the runtime dependencies
    for path in (PACKAGE / "testing").glob("*.py"):
        if path != plugin:
            modules = third_party_imports(path)
            assert {d.lower() for m in modules for d in distributions[m]} <= runtime, path.name
