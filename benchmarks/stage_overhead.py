"""What running stages as Prefect flow runs costs: the gap between two stages, and from an answer to the next stage.

Run: `.venv/bin/python benchmarks/stage_overhead.py` (about 4 minutes). A fresh temporary home with ports shifted
by 27000 gets the Prefect server and its cpu worker (`up --only worker-cpu`); it is stopped at the end. A 10-stage
pipeline of trivial stages (`sh -c 'echo stage N > stage-N.txt'`) runs as a project twice in the same run: first
with no warm engine on the node (the deployments' `opsflow-engine` then starts the cold `python -m prefect.engine`
per flow run, today's path: the baseline), then with the node's warm engine (`up --only warm-engine`: each flow
run a fork of a pre-imported engine). Each stage is a `stage-run/cpu` child flow run of `pipeline-run`. Stage 5
asks for a decision after it: the cold project's is answered through the API, the warm one's by
`opsflow project resume` (timed); both measured from the answer to stage 6's start. The cold baseline's store
block has no answer grace (its run's process exits when it asks and the answer restarts it: today's path); the
warm one has the default grace, so the answer continues the run in its process. A third project, warm without
the grace, shows an answer given after the grace has passed. Baseline of all, in the same
process: the same 10 commands chained by a plain `subprocess.run` loop (with the shell runner's `setpriv` prefix).

Figures: median seconds from one stage's end to the next stage's start (attempt times recorded by the store);
median seconds from one stage's start to the next one's start, next to the loop's, and their ratios; seconds
from the answer to the next stage's start; warm over cold.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env, prefect_client_settings
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


@dataclass
class Figures:
    gaps: list[float]
    steps: list[float]
    resume: float
    #: From the moment Prefect recorded the answer (the run's "Resuming" state) to the next stage's start.
    from_resumed: float
    cli_s: float | None = None
    #: Medians of the gap's parts: the project run creating the next stage's run, the worker taking it (Pending),
    #: the engine up to Running, the flow until the attempt begins.
    parts: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def gap(self) -> float:
        return statistics.median(self.gaps)

    @property
    def step(self) -> float:
        return statistics.median(self.steps)


def no_grace_block() -> str:
    """A store block on the stack's root whose runs exit when they ask for a decision (the name)."""
    from blocks import PipelineStore, load_block

    local = load_block(PipelineStore, "local")
    fields = ("root", "docker_block", "min_free_mb", "file_service_url", "file_service_auth")
    PipelineStore(**{f: getattr(local, f) for f in fields}, answer_grace_s=0).save("no-grace", overwrite=True)
    return "no-grace"


def run_project(name: str, cli_env: dict[str, str] | None = None, store_block: str = "local") -> Figures:
    """Run the benchmark's pipeline as project ``name`` on the stack the client points at; its figures. With
    ``cli_env`` the decision is answered by `opsflow project resume NAME` (timed), else through the API."""
    from blocks import PipelineStore, load_block
    from stage_pipeline.models import ProjectStatus
    from stage_pipeline.prefect_api import answer, start_pipeline_run
    from stage_pipeline.steps import Decision

    store = load_block(PipelineStore, "local")
    store.library().save(pipeline_yaml())
    projects = store.projects()
    library = store.library()
    projects.create(name, library.get("overhead"), library.text("overhead"))
    start_pipeline_run(name, store_block=store_block)
    deadline = time.monotonic() + 600
    p = projects.get(name)
    while p.status != ProjectStatus.WAITING and time.monotonic() < deadline:
        time.sleep(0.05)
        p = projects.get(name)
    assert p.waiting is not None, f"never reached the decision: {p.status} {p.reason}"
    time.sleep(2)  # the run is suspended (without a grace its process exits) a moment after the project says WAITING
    answered = time.time()
    cli_s = None
    if cli_env is None:
        answer(p.waiting.run_id, Decision(action="continue"))
    else:
        opsflow = str(Path(sys.executable).parent / "opsflow")
        done = subprocess.run([opsflow, "project", "resume", name], env=cli_env, capture_output=True, text=True)
        assert done.returncode == 0, f"opsflow project resume {name}: {done.stderr[-2000:]}"
        cli_s = time.time() - answered
    while p.status not in (ProjectStatus.FINISHED, ProjectStatus.PAUSED) and time.monotonic() < deadline:
        time.sleep(0.5)
        p = projects.get(name)
    assert p.status == ProjectStatus.FINISHED, f"{p.status} {p.reason}"
    runs = sorted(p.history, key=lambda a: a.started)
    pairs = [i for i in range(len(runs) - 1) if i + 1 != DECISION_AFTER]  # the decision's wait is measured apart
    gaps = [(runs[i + 1].started - runs[i].ended).total_seconds() for i in pairs]  # type: ignore[operator]
    steps = [(runs[i + 1].started - runs[i].started).total_seconds() for i in pairs]
    parts = gap_parts([(runs[i], runs[i + 1]) for i in pairs])
    next_start = runs[DECISION_AFTER].started
    from_resumed = (next_start - resumed_at(runs[DECISION_AFTER - 1].run_id)).total_seconds()
    return Figures(gaps=gaps, steps=steps, resume=next_start.timestamp() - answered, from_resumed=from_resumed,
                   cli_s=cli_s, parts=parts)  # fmt: skip


def resumed_at(stage_run_id: str | None) -> Any:
    """When the project run that ran this stage was resumed (its last "Resuming" state)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        stage_run = client.read_flow_run(UUID(str(stage_run_id)))
        parent = client.read_task_run(stage_run.parent_task_run_id)  # type: ignore[arg-type]
        states = client.read_flow_run_states(parent.flow_run_id)  # type: ignore[arg-type]
    return [s.timestamp for s in states if s.name == "Resuming"][-1]


def gap_parts(pairs: list[tuple[Any, Any]]) -> tuple[float, float, float, float]:
    """Where a gap goes, from the next stage's flow run and its states as the server recorded them (medians)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    create, take, start, body = [], [], [], []
    with get_client(sync_client=True) as client:
        for before, after in pairs:
            run = client.read_flow_run(UUID(after.run_id))
            pending = [s.timestamp for s in client.read_flow_run_states(UUID(after.run_id)) if s.is_pending()]
            if run.start_time is None or run.created is None or not pending:
                continue
            create.append((run.created - before.ended).total_seconds())
            take.append((pending[0] - run.created).total_seconds())
            start.append((run.start_time - pending[0]).total_seconds())
            body.append((after.started - run.start_time).total_seconds())
    return statistics.median(create), statistics.median(take), statistics.median(start), statistics.median(body)


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="opsflow-stage-overhead-"))
    cfg = StackConfig(home=home).shifted(PORT_OFFSET)
    loop_step = statistics.median(baseline_steps(Path(tempfile.mkdtemp(prefix="opsflow-stage-baseline-"))))
    try:
        up(cfg, only=["worker-cpu"], echo=lambda _: None)
        with prefect_client_settings(cfg):
            # no warm engine on the node: `opsflow-engine` starts the cold engine; no grace: today's path
            cold = run_project("cold", store_block=no_grace_block())
            up(cfg, only=["warm-engine"], echo=lambda _: None)
            warm = run_project("warm", cli_env=child_env(cfg))
            late = run_project("warm-late", store_block="no-grace")
    finally:
        down(cfg, echo=lambda _: None)
    print(f"{STAGES} trivial stages, Prefect server + process worker on this machine (home {home})")
    print(f"{'':34} {'warm engine':>12} {'cold (baseline)':>16} {'warm / cold':>12}")
    for label, w, c in (
        (f"stage end → next start (median {len(warm.gaps)})", warm.gap, cold.gap),
        ("stage start → next start (median)", warm.step, cold.step),
        ("answer → next stage start", warm.resume, cold.resume),
        ("… from the answer's record in Prefect", warm.from_resumed, cold.from_resumed),
        ("… answered after the grace", late.resume, cold.resume),
    ):
        print(f"{label:34} {w:11.2f}s {c:15.2f}s {w / c:11.2f}x")
    print(f"a plain subprocess loop step: {loop_step * 1000:.1f} ms; stage start → next start as flow runs: "
          f"{warm.step / loop_step:,.0f}x warm, {cold.step / loop_step:,.0f}x cold")  # fmt: skip
    for label, f in (("warm", warm), ("cold", cold)):
        print(f"{label}: a gap's parts (medians): next run created {f.parts[0]:.2f} s after the stage's end, "
              f"taken by the worker (Pending) {f.parts[1]:.2f} s later, Running {f.parts[2]:.2f} s after that, "
              f"the attempt begins {f.parts[3]:.2f} s later")  # fmt: skip
    if warm.cli_s is not None:
        print(f"warm: `opsflow project resume` (the CLI answering the form) returned after {warm.cli_s:.2f} s; the "
              "answer above is counted from the moment the command was started")  # fmt: skip
    print(f"all gaps (s), warm: {', '.join(f'{g:.2f}' for g in warm.gaps)}")
    print(f"all gaps (s), cold: {', '.join(f'{g:.2f}' for g in cold.gaps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
