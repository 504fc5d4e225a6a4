"""The packages' ``__init__`` re-export their public names, lazily, and only those."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import z6.cli
import z6.engine
import z6.ipc

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"z6.engine": "engine", "z6.ipc": "ipc", "z6.cli": "cli"}


def _type_checking_imports(init: Path) -> dict[str, str]:
    """``{name: module}`` of the ``if TYPE_CHECKING:`` imports of ``init`` (what mypy sees)."""
    found: dict[str, str] = {}
    for node in ast.parse(init.read_text("utf-8")).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                assert imp.module is not None
                for alias in imp.names:
                    found[alias.name] = imp.module.rsplit(".", 1)[-1]
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_exported_name_is_its_module_s_object(package: str) -> None:
    pkg = importlib.import_module(package)
    exports: dict[str, str] = pkg._EXPORTS
    assert sorted(pkg.__all__) == sorted(exports)
    for name, module in exports.items():
        owner = importlib.import_module(f"{package}.{module}")
        assert getattr(pkg, name) is getattr(owner, name), name


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_what_mypy_sees_is_what_is_exported(package: str) -> None:
    pkg = importlib.import_module(package)
    assert _type_checking_imports(REPO / PACKAGES[package] / "__init__.py") == pkg._EXPORTS


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"module 'z6\.engine' has no attribute 'nope'"):
        _ = z6.engine.nope  # type: ignore[attr-defined]
    assert not hasattr(z6.ipc, "_Aggregator")
    assert not hasattr(z6.cli, "nope")


def test_importing_the_packages_imports_none_of_their_modules() -> None:
    # `z6 version` must not pay for trio; a worker must not import the CLI.
    code = (
        "import sys, z6.engine, z6.ipc, z6.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('z6.', 'trio', 'typer'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['z6.cli', 'z6.engine', 'z6.engine._exports', 'z6.ipc']"
