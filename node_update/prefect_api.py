"""The Prefect side of the canary approval gate: one waiting flow run per gated update, and its answer.

When a tick finds a gated update's canary done (:func:`node_update.planner.awaiting_approval`), the
``node-update-tick`` flow calls :func:`request_approvals`: it makes sure one live ``node-update-approval`` run asks
for each such update (a run that ended, was cancelled or deleted is replaced on the next tick: level-triggered,
like the rest of the service). The run ids live in ``state/approval-runs.json`` under the root, so the Python
API and ``opsflow nu decide`` answer the same form the Prefect UI shows.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> save_approval_runs(root, {"20260101000000": "6c3f..."}); load_approval_runs(root)
    {'20260101000000': '6c3f...'}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import cast

from node_update.models import CanaryDecision
from opsflow.adapters.prefect_runs import answer_form, flow_run_alive
from opsflow.files import atomic_write_text

APPROVAL_DEPLOYMENT = "node-update-approval/node-update-approval"


def approval_runs_path(root: Path) -> Path:
    return root / "state" / "approval-runs.json"


def load_approval_runs(root: Path) -> dict[str, str]:
    """codename -> id of the flow run that asks for its decision (empty when none was started)."""
    try:
        data = json.loads(approval_runs_path(root).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_approval_runs(root: Path, runs: dict[str, str]) -> None:
    atomic_write_text(approval_runs_path(root), json.dumps(runs, indent=1, sort_keys=True) + "\n")


def request_approvals(root: Path, awaiting: Iterable[str], settings_block: str | None) -> dict[str, str]:
    """Make sure a live approval run asks for each codename of ``awaiting``; returns the runs started now.

    Records of updates that wait no more (decided, retired) are dropped.
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    runs = load_approval_runs(root)
    kept: dict[str, str] = {}
    started: dict[str, str] = {}
    for codename in sorted(awaiting):
        run_id = runs.get(codename)
        if run_id and flow_run_alive(run_id):
            kept[codename] = run_id
            continue
        run = cast(
            FlowRun,
            run_deployment(  # type: ignore[call-arg]
                APPROVAL_DEPLOYMENT,
                parameters={"codename": codename, "settings_block": settings_block},
                flow_run_name=f"approve-{codename}",
                timeout=0,
                as_subflow=False,
                _sync=True,
            ),
        )
        kept[codename] = started[codename] = str(run.id)
    if kept != runs:
        save_approval_runs(root, kept)
    return started


def answer_approval(root: Path, codename: str, decision: CanaryDecision, timeout_s: float = 60.0) -> str | None:
    """Answer the form of the live approval run of ``codename`` (as the UI's Resume does); returns its id, or
    None when no run waits (the caller then records the decision itself)."""
    run_id = load_approval_runs(root).get(codename)
    if not run_id or not flow_run_alive(run_id):
        return None
    answer_form(run_id, decision.model_dump(exclude_none=True), timeout_s)
    return run_id


__all__ = [
    "APPROVAL_DEPLOYMENT",
    "answer_approval",
    "approval_runs_path",
    "load_approval_runs",
    "request_approvals",
    "save_approval_runs",
]
