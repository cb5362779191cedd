"""opsflow: Prefect flows for the operations of a GPU/HPC computing centre, its Python API and its local stack.

``import opsflow; site = opsflow.connect()`` is the notebook entry point (:mod:`opsflow.api`). This module
imports nothing at import time, so the shared helpers below it (``opsflow.files``, ``opsflow.errors``, ...) stay
cheap to import.

Example:
    >>> import opsflow
    >>> opsflow.connect.__module__
    'opsflow.api'
"""

from __future__ import annotations

from typing import Any

__all__ = ["Site", "connect"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from opsflow import api

        return getattr(api, name)
    raise AttributeError(f"module 'opsflow' has no attribute {name!r}")
