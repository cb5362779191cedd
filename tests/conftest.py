"""Session fixtures that start real components through the same code as `opsflow up`.

The whole stack runs once per session in a temporary OPSFLOW_HOME with every port shifted by ``STACK_PORT_OFFSET``
(so a developer's own `opsflow up` on the default ports is not disturbed; OPSFLOW_TEST_PORT_OFFSET changes
the offset). With CI=true a component that cannot
start is a failure, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsflow.stack.base import StackError
from opsflow.stack.config import StackConfig
from opsflow.stack.env import prefect_client_settings
from opsflow.stack.manager import down, up
from opsflow.stack.process import stack_processes
from tests.support import unavailable

#: Another value lets two engineers (or two checkouts) run the end-to-end tests on one machine at once.
STACK_PORT_OFFSET = int(os.environ.get("OPSFLOW_TEST_PORT_OFFSET", "10000"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    """The full local stack (Prefect + workers, Slurm, Spark, Prometheus, podman), up for the whole session."""
    # Node checks every 20 s instead of the seed's minute: the e2e test of the periodic check waits for a round.
    cfg = StackConfig(home=tmp_path_factory.mktemp("stack"), node_check_every_s=20).shifted(STACK_PORT_OFFSET)
    try:
        up(cfg)
    except StackError as exc:
        down(cfg)
        unavailable(f"the local stack did not start: {exc}")
    with prefect_client_settings(cfg):
        yield cfg
    down(cfg)
    left = stack_processes(cfg.home)
    assert not left, f"processes left behind by down: {[(p.pid, p.name()) for p in left]}"


#: Run order of the test folders: the fast ones first, and every integration test (each starts its own Spark,
#: Slurm, ...) before the first end-to-end test brings the whole stack up, so the two never run at once.
FOLDER_ORDER = ("unit", "cli", "integration", "e2e")


def folder_of(parts: tuple[str, ...]) -> str:
    """The folder of FOLDER_ORDER a test file lies in (by its path's parts), "other" outside them."""
    return next((folder for folder in FOLDER_ORDER if folder in parts), "other")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ranks = {folder: index for index, folder in enumerate(FOLDER_ORDER)}
    # Stable: the order inside a folder is kept.
    items.sort(key=lambda item: ranks.get(folder_of(item.path.parts), len(FOLDER_ORDER)))


#: Seconds per test module (setup, call and teardown of its tests, the fixtures they start included).
_MODULE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::", 1)[0]
    _MODULE_SECONDS[module] = _MODULE_SECONDS.get(module, 0.0) + report.duration


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the session's time went, per folder and for the slowest modules: the last lines CI keeps."""
    if not _MODULE_SECONDS:
        return
    folders: dict[str, float] = {}
    for module, seconds in _MODULE_SECONDS.items():
        folder = folder_of(Path(module).parts)
        folders[folder] = folders.get(folder, 0.0) + seconds
    terminalreporter.section("time per folder and module")
    terminalreporter.line("  ".join(f"{f} {s:.0f}s" for f, s in folders.items()))
    slowest = sorted(_MODULE_SECONDS.items(), key=lambda kv: -kv[1])[:20]
    terminalreporter.line("; ".join(f"{m.removeprefix('tests/')} {s:.0f}s" for m, s in slowest))
