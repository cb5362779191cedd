"""`opsflow demo`: run each process's demo deployment on the local stack and report how it ended.

Later subsystems add their deployment to ``DEMO_DEPLOYMENTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from prefect.client.schemas.objects import FlowRun

from opsflow.stack.config import StackConfig
from opsflow.stack.env import prefect_client_settings

DEMO_DEPLOYMENTS: list[tuple[str, dict[str, object]]] = [
    ("stack-check/stack-check", {}),
]


def run_and_wait(name: str, parameters: dict[str, object] | None = None, timeout_s: float = 600) -> FlowRun:
    """Run deployment ``name`` through its work pool and wait (bounded) for the run to end."""
    from prefect.deployments import run_deployment

    return cast(FlowRun, run_deployment(name, parameters=parameters or {}, timeout=timeout_s))


def run_demo(cfg: StackConfig, timeout_s: float = 600, echo: Callable[[str], None] = print) -> bool:
    """Run every demo deployment in turn through the stack's workers; True when all completed."""
    all_ok = True
    with prefect_client_settings(cfg):
        for name, params in DEMO_DEPLOYMENTS:
            echo(f"running {name} ...")
            run = run_and_wait(name, params, timeout_s)
            state = run.state
            ok = state is not None and state.is_completed()
            all_ok &= ok
            url = f"http://127.0.0.1:{cfg.prefect_port}/runs/flow-run/{run.id}"
            echo(f"{name}: {state.name if state else 'no state'} {'' if ok else state.message if state else ''}  {url}")
    return all_ok
