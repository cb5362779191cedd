"""What running stages as Prefect flow runs costs: the gap between two stages, and from a resume to the next stage.

Run: `.venv/bin/python benchmarks/stage_overhead.py` (about 3 minutes). A fresh temporary home with ports shifted
by 27000 gets the Prefect server and its cpu worker (`up --only worker-cpu`); it is stopped at
the end. A 10-stage pipeline of trivial stages (`sh -c 'echo stage N > stage-N.txt'`) runs as a project: each
stage is a `stage-run/cpu` child flow run of `pipeline-run`, started by the worker as its own process. Stage 5
asks for a decision after it; the benchmark answers it through the API and measures from the answer to stage 6's
start. Baseline, in the same process: the same 10 commands chained by a plain `subprocess.run` loop (each with
the same `setpriv` prefix as the shell runner uses as root).

Figures: median seconds from one stage's end to the next stage's start (attempt times recorded by the store);
median seconds from one stage's start to the next one's start, next to the same for the loop, and their ratio;
seconds from the answer to the next stage's start.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opsflow.stack.config import StackConfig
from opsflow.stack.env import prefect_client_settings
from opsflow.stack.manager import down, up
from stage_pipeline.workspace import unprivileged_prefix

PORT_OFFSET = 27000
STAGES = 10
DECISION_AFTER = 5


def pipeline_yaml(stages: int = STAGES, decision_after: int = DECISION_AFTER) -> str:
    """The benchmark's pipeline definition (pure).

    >>> "approval: after" in pipeline_yaml(3, 2) and pipeline_yaml(3, 2).count("- name:")
    3
    """
    lines = ["name: overhead", "description: trivial stages", "stages:"]
    for n in range(1, stages + 1):
        lines.append(f"  - name: s{n:02d}")
        lines.append(f"    command: [sh, -c, 'echo stage {n} > stage-{n}.txt']")
        if n == decision_after:
            lines.append("    approval: after")
    return "\n".join(lines) + "\n"


def baseline_steps(workdir: Path, stages: int = STAGES) -> list[float]:
    """Seconds from one command's start to the next one's start, chained by a plain loop (a step's whole cost)."""
    starts: list[float] = []
    for n in range(1, stages + 1):
        starts.append(time.monotonic())
        subprocess.run([*unprivileged_prefix(), "sh", "-c", f"echo stage {n} > stage-{n}.txt"], cwd=workdir, check=True)
    starts.append(time.monotonic())
    return [starts[i + 1] - starts[i] for i in range(stages)]


def main() -> int:
    from blocks import PipelineStore, load_block
    from stage_pipeline.models import ProjectStatus
    from stage_pipeline.prefect_api import answer, start_pipeline_run
    from stage_pipeline.steps import Decision

    home = Path(tempfile.mkdtemp(prefix="opsflow-stage-overhead-"))
    cfg = StackConfig(home=home).shifted(PORT_OFFSET)
    base = baseline_steps(Path(tempfile.mkdtemp(prefix="opsflow-stage-baseline-")))
    try:
        up(cfg, only=["worker-cpu"], echo=lambda _: None)
        with prefect_client_settings(cfg):
            store = load_block(PipelineStore, "local")
            store.library().save(pipeline_yaml())
            projects = store.projects()
            library = store.library()
            projects.create("bench", library.get("overhead"), library.text("overhead"))
            start_pipeline_run("bench")
            deadline = time.monotonic() + 600
            p = projects.get("bench")
            while p.status != ProjectStatus.WAITING and time.monotonic() < deadline:
                time.sleep(0.2)
                p = projects.get("bench")
            assert p.waiting is not None, f"never reached the decision: {p.status} {p.reason}"
            time.sleep(2)  # the run is suspended (its process exits) a moment after the project says WAITING
            answered = time.time()
            answer(p.waiting.run_id, Decision(action="continue"))
            while p.status not in (ProjectStatus.FINISHED, ProjectStatus.PAUSED) and time.monotonic() < deadline:
                time.sleep(0.5)
                p = projects.get("bench")
            assert p.status == ProjectStatus.FINISHED, f"{p.status} {p.reason}"
    finally:
        down(cfg, echo=lambda _: None)
    runs = sorted(p.history, key=lambda a: a.started)
    pairs = [i for i in range(len(runs) - 1) if i + 1 != DECISION_AFTER]  # the decision's wait is measured apart
    gaps = [(runs[i + 1].started - runs[i].ended).total_seconds() for i in pairs]  # type: ignore[operator]
    steps = [(runs[i + 1].started - runs[i].started).total_seconds() for i in pairs]
    resume = runs[DECISION_AFTER].started.timestamp() - answered
    gap, step, loop_step = statistics.median(gaps), statistics.median(steps), statistics.median(base)
    print(f"{STAGES} trivial stages, Prefect server + process worker on this machine (home {home})")
    print(f"stage end → next stage start, median of {len(gaps)}: {gap:.2f} s (a plain loop has no gap: ~0)")
    print(f"stage start → next stage start, median: {step:.2f} s as flow runs, {loop_step * 1000:.1f} ms in a plain "
          f"subprocess loop: {step / loop_step:,.0f}x")  # fmt: skip
    print(f"answer to the decision → next stage start: {resume:.2f} s ({resume / loop_step:,.0f}x a loop step)")
    print(f"all gaps (s): {', '.join(f'{g:.2f}' for g in gaps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
