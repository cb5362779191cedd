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

from opsflow.lazy import lazy_exports

__all__ = ["Site", "connect"]

__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "api"))
