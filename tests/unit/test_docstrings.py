"""The ``>>>`` examples in the docstrings of every module of the distribution run, and show what they claim.

One test per module, run from the repository root (examples may name ``examples/...`` files), with ``ELLIPSIS``
and ``NORMALIZE_WHITESPACE``. A module without examples passes; an example marked ``# doctest: +SKIP`` (one that
needs a running server) stays skipped. The ``examples`` package's own doctests run in ``test_video_tracking.py``.
"""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The packages of the distribution whose docstrings are part of the public documentation.
PACKAGES = (
    "opsflow", "node_update", "spark_scaler", "stage_pipeline", "ci_training", "config_trials", "blocks", "work_pools",
    "flows",
)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_names() -> list[str]:
    """Every module of :data:`PACKAGES`, found on disk (collecting the tests imports nothing)."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = module_names()


def test_every_package_is_walked() -> None:
    assert set(PACKAGES) <= set(MODULES)
    assert "opsflow.stack.blocks" in MODULES and "stage_pipeline.monitor" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    module = importlib.import_module(name)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=out.write)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples of {name} failed:\n{out.getvalue()}"
