"""Prefect's REST API for the calls a person waits on: read a flow run, see that its form is saved, answer it.

httpx only, no Prefect import: `opsflow project resume` answers a form in a fraction of a second instead of
first importing Prefect (4-9 s on a small node; issue 15). The calls are those of Prefect's own client
(``GET /flow_runs/{id}``, ``GET /flow_runs/{id}/input/{key}``, ``POST /flow_runs/{id}/resume``), with the same
outcomes: a run that is not paused, or an answer the form's schema refuses, is an :class:`AdapterError` with the
server's reason, and the run stays as it was.

Example:
    >>> FINAL_STATES >= {"COMPLETED", "CRASHED"}
    True
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from opsflow.errors import AdapterError

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
#: Answers that ask to try again: Prefect sends 503 when a transaction lost a race for its SQLite database (and
#: rolled back), and its own client retries them; so does this adapter, sooner than that client's 2 s.
RETRY_STATUS = frozenset({429, 503})
RETRY_AFTER_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class PrefectRest:
    """A few REST calls against ``api_url`` (``.../api``), with basic auth ``user:password`` when given."""

    def __init__(self, api_url: str, auth_string: str | None = None, timeout_s: float = 10.0) -> None:
        auth = tuple(auth_string.split(":", 1)) if auth_string and ":" in auth_string else None
        self.api_url = api_url.rstrip("/")
        self._client = httpx.Client(base_url=self.api_url + "/", auth=auth, timeout=timeout_s)  # type: ignore[arg-type]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrefectRest:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for delay in (*RETRY_AFTER_S, None):
            try:
                r = self._client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise AdapterError(f"cannot reach the Prefect API at {self.api_url}: {exc}") from exc
            if r.status_code not in RETRY_STATUS or delay is None:
                return r
            time.sleep(delay)
        raise AssertionError("unreachable: the last try returns")

    def flow_run(self, run_id: str) -> dict[str, Any]:
        r = self._call("GET", f"flow_runs/{run_id}")
        if r.status_code == 404:
            raise AdapterError(f"no flow run {run_id} on {self.api_url}")
        if r.status_code >= 400:
            raise AdapterError(f"the Prefect API answered {r.status_code} for flow run {run_id}: {r.text[:300]}")
        return dict(r.json())

    def flow_run_end(self, run_id: str) -> str | None:
        """How a flow run ended (``"Failed: <message>"``), None while it is not in a final state."""
        state = self.flow_run(run_id).get("state") or {}
        if state.get("type") not in FINAL_STATES:
            return None
        return f"{state.get('name')}: {state.get('message') or 'no message'}"

    def form_ready(self, run_id: str) -> bool:
        """Whether the run is paused AND its form is saved (it is PAUSED a moment before that)."""
        state = self.flow_run(run_id).get("state") or {}
        keyset = (state.get("state_details") or {}).get("run_input_keyset")
        if state.get("type") != "PAUSED" or not keyset:
            return False
        return self._call("GET", f"flow_runs/{run_id}/input/{keyset['schema']}").status_code == 200

    def answer_form(self, run_id: str, values: dict[str, Any], timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
        """Resume a run paused or suspended for input with ``values`` as the form's answer (as the UI's Resume
        button does); waits up to ``timeout_s`` for the form to exist."""
        deadline = time.monotonic() + timeout_s
        while not self.form_ready(run_id):
            if time.monotonic() > deadline:
                raise AdapterError(f"flow run {run_id} shows no form to answer within {timeout_s:.0f} s")
            time.sleep(poll_s)
        r = self._call("POST", f"flow_runs/{run_id}/resume", json={"run_input": values})
        if r.status_code >= 400:
            raise AdapterError(f"the server refused the answer to run {run_id}: {r.status_code} {r.text[:500]}")
        result = r.json()
        if result.get("status") != "ACCEPT":
            reason = (result.get("details") or {}).get("reason") or result.get("status")
            raise AdapterError(f"the server refused the answer to run {run_id}: {reason}")
