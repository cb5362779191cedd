"""Flow runs that wait for a person: is a run's form there yet, answer it, what state is a run in.

Shared by every process with a decision in the Prefect UI (the pipelines' approvals, the node update's canary
gate). A form is a ``RunInput`` the suspended run saved, answered with ``resume_flow_run(run_input=...)`` as the
UI's Resume button does. Prefect is imported inside the functions: a CLI that only builds a URL starts fast.

Example:
    >>> ALIVE_STATES >= {"PAUSED", "RUNNING"}
    True
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from opsflow.errors import AdapterError

#: Flow run state types of a run that has not ended (a suspended one is PAUSED).
ALIVE_STATES = frozenset({"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"})


def form_ready(run_id: str) -> bool:
    """Whether the run is suspended AND its form is saved: a run is PAUSED a moment before that."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        keyset = run.state.state_details.run_input_keyset if run.state and run.state.is_paused() else None
        if not keyset:
            return False
        try:
            client.read_flow_run_input(UUID(run_id), keyset["schema"])
        except (ObjectNotFound, PrefectHTTPStatusError):  # 404 until the suspending run has saved it
            return False
    return True


def wait_for_form(run_id: str, timeout_s: float = 60.0) -> bool:
    """Wait (bounded) until :func:`form_ready`; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while not form_ready(run_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def answer_form(run_id: str, values: dict[str, Any], timeout_s: float = 60.0) -> None:
    """Resume a run suspended for input with ``values`` as the form's answer.

    Waits up to ``timeout_s`` for the form to exist. Raises :class:`~opsflow.errors.AdapterError` (a
    RuntimeError) with the server's reason when the input is refused (the run then stays suspended).
    """
    from prefect.flow_runs import resume_flow_run

    if not wait_for_form(run_id, timeout_s):
        raise AdapterError(f"flow run {run_id} shows no form to answer within {timeout_s:.0f} s")
    try:
        resume_flow_run(UUID(run_id), run_input=values, _sync=True)  # type: ignore[call-arg]
    except RuntimeError as exc:  # Prefect's own refusal (the input does not match the form's schema)
        raise AdapterError(f"the server refused the answer to run {run_id}: {exc}") from exc


def flow_run_state(run_id: str) -> str | None:
    """The state type of a flow run (e.g. ``"PAUSED"``, ``"RUNNING"``), None if unknown."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    return run.state.type.value if run.state else None


def flow_run_alive(run_id: str) -> bool:
    """Whether the flow run exists and has not ended (a run deleted from the server counts as ended)."""
    from prefect.exceptions import ObjectNotFound

    try:
        return flow_run_state(run_id) in ALIVE_STATES
    except ObjectNotFound:
        return False


def ui_url(api_url: str, flow_run_id: str) -> str:
    """The flow run's page in the Prefect UI (``…/runs/flow-run/<id>``, as prefect.utilities.urls.url_for).

    >>> ui_url("http://127.0.0.1:4200/api", "1234")
    'http://127.0.0.1:4200/runs/flow-run/1234'
    """
    base = api_url.rstrip("/")
    base = base[: -len("/api")] if base.endswith("/api") else base
    return f"{base}/runs/flow-run/{flow_run_id}"
