"""Lazy re-exports for the package ``__init__`` modules.

Each package names its public objects once, mapped to the module that defines them, and loads
a module only when one of its names is first used: ``z6 version`` or ``z6 validate`` must not
pay for importing trio, and a forked worker must not import the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``package.MODULE`` on first use
    of a name ``exports`` maps to ``MODULE``, caches the object in the package and returns it;
    any other name raises ``AttributeError`` as a plain module would."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
