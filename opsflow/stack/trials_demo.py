"""`opsflow demo trials`: the example configuration trial on the local stack, then its report.

Two trigger (checkpoint) intervals of ``examples/config_trials/vehicle_counts.py``, 5 rounds each, through the
``config-trial`` deployment (about 7 minutes on two cores, hence not part of `opsflow demo` itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from opsflow.stack.ci_demo import wait_for_run
from opsflow.stack.config import StackConfig
from opsflow.stack.env import prefect_client_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config_trials" / "checkpoint.yaml"


def config_trial(cfg: StackConfig, echo: Callable[[str], None], timeout_s: float = 1800) -> bool:
    """Run the example trial through its deployment; print where to watch it and, at the end, its report."""
    import opsflow

    with prefect_client_settings(cfg):
        site = opsflow.connect(cfg.home)
        plan = site.trials.validate(EXAMPLE)
        started = site.trials.run(EXAMPLE)
        echo(
            f"configuration trial {plan.trial}: {plan.runs} application runs (at least {plan.minutes_at_least:g} "
            f"min): {started.url}"
        )
        run = wait_for_run(started.flow_run_id, timeout_s)
    report = Path(started.trial_dir) / "report.md"
    saved = Path(started.trial_dir) / "report.json"
    completed = run.state is not None and run.state.is_completed() and saved.exists()
    # A trial whose every variant failed completes too; the showcase is fine only with a winner.
    ok = completed and bool(json.loads(saved.read_text())["report"]["winner"])
    if completed:
        echo(report.read_text())
        echo(f"plots and every number: {started.trial_dir} (latency.png, throughput.png, report.json)")
    else:
        echo(f"configuration trial {plan.trial}: {run.state.name if run.state else 'no state'}")
    return ok


#: The showcases of `opsflow demo NAME`: longer than the main demo's budget.
SHOWCASES: dict[str, Callable[[StackConfig, Callable[[str], None]], bool]] = {"trials": config_trial}
