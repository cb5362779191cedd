"""`opsflow demo`: run each process's demo deployment on the local stack and report how it ended.

Later subsystems add their deployment to ``DEMO_DEPLOYMENTS``.
"""

from __future__ import annotations

from collections.abc import Callable

from opsflow.stack.config import StackConfig
from opsflow.stack.env import prefect_client_settings

DEMO_DEPLOYMENTS: list[tuple[str, dict[str, object]]] = [
    ("stack-check/stack-check", {}),
]


def run_demo(cfg: StackConfig, timeout_s: float = 600, echo: Callable[[str], None] = print) -> bool:
    """Run every demo deployment in turn through the stack's workers; True when all completed."""
    from prefect.deployments import run_deployment

    all_ok = True
    with prefect_client_settings(cfg):
        for name, params in DEMO_DEPLOYMENTS:
            echo(f"running {name} ...")
            run = run_deployment(name, parameters=params, timeout=timeout_s)
            state = run.state
            ok = state is not None and state.is_completed()
            all_ok &= ok
            url = f"http://127.0.0.1:{cfg.prefect_port}/runs/flow-run/{run.id}"
            echo(f"{name}: {state.name if state else 'no state'} {'' if ok else state.message if state else ''}  {url}")
    return all_ok
