"""One public API: what a module exports, its package exports, and the API reference lists.

Rules checked here:

- every name in the ``__all__`` of a public submodule of a package (``numpyro_ext.guides.flows``)
  is in the package's ``__all__`` and is the same object there (``numpyro_ext.guides.AutoFlow``),
  unless the submodule is a documented building block with its own API reference entry
  (``::: numpyro_ext.infer.conjugate_terms``);
- every name in a package's ``__all__`` exists;
- every public package and top-level module has an API reference page under ``docs/api/``
  rendering it with mkdocstrings (``::: numpyro_ext.pkg``, which renders the package's
  ``__all__``), and the page is in the site navigation.
"""

import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest

import numpyro_ext

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = {path: path.read_text() for path in sorted((ROOT / "docs" / "api").glob("*.md"))}


def _public(names):
    return [name for name in names if not name.rsplit(".", 1)[-1].startswith("_")]


def _children(package):
    return _public(
        info.name for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
    )


TOP_LEVEL = _children(numpyro_ext)
PACKAGES = [
    name for name in TOP_LEVEL if hasattr(importlib.import_module(name), "__path__")
]  # fmt: skip
SUBMODULES = [
    pytest.param(package, module, id=module)
    for package in PACKAGES
    if package != "numpyro_ext.demo"  # the tour's sections are scripts, not API
    for module in _children(importlib.import_module(package))
]


def _not_re_exported(pkg, mod) -> list[str]:
    """Names of ``mod.__all__`` that ``pkg`` does not export as the same object."""
    return [
        name
        for name in getattr(mod, "__all__", [])
        if name not in getattr(pkg, "__all__", [])
        or getattr(pkg, name, None) is not getattr(mod, name)
    ]


@pytest.mark.parametrize(("package", "module"), SUBMODULES)
def test_submodule_names_are_re_exported_by_their_package(package, module):
    pkg, mod = importlib.import_module(package), importlib.import_module(module)
    entry = re.compile(rf"^:::\s+{re.escape(module)}\s*$", re.MULTILINE)
    if any(entry.search(text) for text in API_PAGES.values()):
        return  # a documented building block, rendered under its own name
    missing = _not_re_exported(pkg, mod)
    assert not missing, f"{module}.__all__ names not re-exported by {package}: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_all_names_exist(package):
    pkg = importlib.import_module(package)
    absent = [name for name in getattr(pkg, "__all__", []) if not hasattr(pkg, name)]
    assert not absent, f"{package}.__all__ lists names it does not define: {absent}"


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_public_package_or_module_has_an_api_page(name):
    pattern = re.compile(rf"^:::\s+{re.escape(name)}(\.\w+)*\s*$", re.MULTILINE)
    pages = [path for path, text in API_PAGES.items() if pattern.search(text)]
    assert pages, f"no page in docs/api renders {name} (add docs/api/<name>.md with ::: {name})"
    nav = (ROOT / "mkdocs.yml").read_text()
    for path in pages:
        assert f"api/{path.name}" in nav, f"docs/api/{path.name} is not in mkdocs.yml nav"


def test_the_rules_can_fail():
    """Negative control: a module exporting a name its package lacks, or another object."""
    mod, pkg = types.ModuleType("mod"), types.ModuleType("pkg")
    mod.__all__, mod.f, mod.g = ["f", "g"], object(), object()
    pkg.__all__, pkg.f, pkg.g = ["f"], mod.f, mod.g
    assert _not_re_exported(pkg, mod) == ["g"]
    pkg.__all__, pkg.g = ["f", "g"], object()
    assert _not_re_exported(pkg, mod) == ["g"]
