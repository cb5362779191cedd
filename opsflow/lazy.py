"""Public names of a package, imported from their submodule on first use: a cheap ``import package``.

A package's ``__init__`` lists where each public name lives and hands the lookup to :func:`lazy_exports`
(PEP 562), so ``import spark_scaler`` costs milliseconds and the docker SDK or Prefect load only for the names
that need them.

Example:
    >>> __getattr__ = lazy_exports("os", {"join": "path"})
    >>> __getattr__("join").__name__
    'join'
    >>> __getattr__("nope")
    Traceback (most recent call last):
    ...
    AttributeError: module 'os' has no attribute 'nope'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` giving ``name`` from ``<package>.<where[name]>``, imported when first asked."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
