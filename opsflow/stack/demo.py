"""`opsflow demo`: run each process's demo deployment on the local stack and report how it ended.

Later subsystems add their deployment to ``DEMO_DEPLOYMENTS`` (or a function like ``node_update_rollout``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from prefect.client.schemas.objects import FlowRun

from opsflow.stack.ci_demo import ci_training
from opsflow.stack.config import StackConfig
from opsflow.stack.env import prefect_client_settings

DEMO_DEPLOYMENTS: list[tuple[str, dict[str, object]]] = [
    ("stack-check/stack-check", {}),
]


def run_and_wait(name: str, parameters: dict[str, object] | None = None, timeout_s: float = 600) -> FlowRun:
    """Run deployment ``name`` through its work pool and wait (bounded) for the run to end."""
    from prefect.deployments import run_deployment

    return cast(FlowRun, run_deployment(name, parameters=parameters or {}, timeout=timeout_s))


def node_update_rollout(cfg: StackConfig, echo: Callable[[str], None], max_ticks: int = 40) -> bool:
    """A gated canary on a busy cluster: every node runs a user job with more queued behind them; the sample
    bundle is published for every node with one canary and ``approve``; the `node-update-tick` deployment is run
    until the canary is updated and the approval run shows its form, which is left for you (like the pipeline's).

    The demo's previous update, if it still waits, is retired first: a second demo starts from a clean catalog.
    """
    from node_update import catalog as catalog_io
    from node_update import spool
    from node_update.codename import codename_at
    from node_update.config import local_root
    from node_update.prefect_api import load_approval_runs
    from opsflow.adapters.prefect_runs import ui_url, wait_for_form
    from opsflow.adapters.slurm import SlurmCLI
    from opsflow.files import atomic_write_text

    root = local_root(cfg.home)
    last = cfg.home / "demo" / "node-update-codename"
    previous = last.read_text().strip() if last.exists() else ""
    if previous and catalog_io.load_catalog(root).find(previous):
        catalog_io.retire(root, previous)
        echo(f"node update: retired the previous demo's update {previous}")
    cli = SlurmCLI(conf=cfg.slurm_conf)
    jobs = cfg.slurm_nodes + 4
    for _ in range(jobs):  # exclusive one-node jobs: a freed node goes to the next one at once
        cli.run(["sbatch", "--parsable", "--job-name=demo-user-job", "--nodes=1", "--exclusive",
                 f"--output={cfg.home / 'shared' / 'demo-user-job-%j.out'}", "--wrap=sleep 20"])  # fmt: skip
    echo(f"node update: {jobs} user jobs of 20 s on {cfg.slurm_nodes} nodes: all busy, 4 queued")
    code = codename_at(time.time())
    bundle = Path(__file__).resolve().parents[2] / "examples" / "node_update" / "bundle"
    entry = catalog_io.publish(
        root, code, f"nid[001-{cfg.slurm_nodes:03d}]", canary=1, approve=True, bundle=bundle
    )
    atomic_write_text(last, code + "\n")
    echo(f"node update: published {code} for {len(entry.nodes)} nodes, canary 1, then waits for approval")
    for tick in range(1, max_ticks + 1):
        run = run_and_wait("node-update-tick/node-update-tick", {}, timeout_s=300)
        ledger = spool.load_ledger(root)
        done = sorted(n for n in entry.nodes if (ledger.nodes.get(n) and (ledger.nodes[n].level or "") >= code))
        queued = cli.run(["squeue", "--noheader", "--name=demo-user-job", "--states=PENDING", "--format=%i"])
        echo(
            f"node update: tick {tick} ({run.state.name if run.state else '?'}): {len(done)}/{len(entry.nodes)} "
            f"updated, {len(queued.split())} user jobs queued"
        )
        approval = load_approval_runs(root).get(code)
        if approval and wait_for_form(approval, timeout_s=30):
            echo(f"node update: canary {', '.join(done)} updated; the rollout waits for your decision: open")
            echo(f"  {ui_url(cfg.prefect_api_url, approval)}, press Resume and choose widen (a new res_limit if")
            echo(f"  you like) or retire; or: opsflow nu decide {code} [--retire] [--res-limit N] --comment '...'")
            return True
        time.sleep(3)
    echo(f"node update: the canary of {code} was not done after {max_ticks} ticks")
    return False


def spark_autoscale(cfg: StackConfig, echo: Callable[[str], None], timeout_s: float = 480) -> bool:
    """Run the `spark-autoscale` deployment while a CPU-bound PySpark job runs: one scale-out, then one scale-in.

    The controller runs with the example config (its minimum is the stack's 2 workers) and a state file of its
    own; the demo reads the decisions from that file and cancels the controller once both actions happened.
    """
    import subprocess

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    from opsflow.stack.env import child_env, spark_home
    from opsflow.stack.spark import local_worker_backend
    from spark_scaler.controller import load_state
    from spark_scaler.models import Action

    examples = Path(__file__).resolve().parents[2] / "examples" / "spark_scaler"
    state_file = cfg.home / "scaler" / "demo.state.json"
    state_file.unlink(missing_ok=True)
    log = cfg.home / "logs" / "demo-cpu-load.log"
    argv = [f"{spark_home()}/bin/spark-submit", str(examples / "cpu_load.py"), "8", "20"]
    with open(log, "wb") as sink:
        job = subprocess.Popen(argv, env=child_env(cfg), stdout=sink, stderr=subprocess.STDOUT)
    echo(f"spark autoscale: a CPU-bound PySpark job (8 tasks of 20 s) on {cfg.spark_workers} workers; log {log}")
    run = cast(
        FlowRun,
        run_deployment(
            "spark-autoscale/spark-autoscale", parameters={"state_file": str(state_file), "ticks": 200}, timeout=0
        ),
    )
    echo(f"spark autoscale: controller http://127.0.0.1:{cfg.prefect_port}/runs/flow-run/{run.id}")
    seen: set[Action] = set()
    last_at = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not {Action.SCALE_OUT, Action.SCALE_IN} <= seen:
            time.sleep(2)
            decisions = load_state(state_file).decisions if state_file.exists() else []
            for d in [d for d in decisions if d.at > last_at and d.action != Action.HOLD]:
                echo(f"spark autoscale: {d.action.value} {d.current} → {d.target}: {d.reason}")
                if d.action == Action.SCALE_OUT or (d.action == Action.SCALE_IN and Action.SCALE_OUT in seen):
                    seen.add(d.action)
            last_at = max([last_at, *(d.at for d in decisions)])
    finally:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(), force=True)
        if job.poll() is None:
            job.terminate()
        job.wait(timeout=60)
        local_worker_backend(cfg, child_env(cfg)).restore(cfg.spark_workers)
    ok = {Action.SCALE_OUT, Action.SCALE_IN} <= seen
    echo(f"spark autoscale: {'one scale-out and one scale-in seen' if ok else 'no scale-out and scale-in in time'}")
    return ok


def video_tracking(cfg: StackConfig, echo: Callable[[str], None], timeout_s: float = 300) -> bool:
    """Create a video-tracking project, run it to its first approval and leave it waiting there in the UI."""
    from blocks import PipelineStore, load_block
    from stage_pipeline.models import ProjectStatus
    from stage_pipeline.prefect_api import start_pipeline_run, wait_for_form

    store = load_block(PipelineStore, "local")
    definition = Path(__file__).resolve().parents[2] / "examples" / "video_tracking" / "pipeline.yaml"
    pipeline = store.library().save(definition.read_text())
    projects = store.projects()
    name = f"traffic-{time.strftime('%Y%m%d-%H%M%S')}"
    projects.create(name, pipeline, definition.read_text())
    run = start_pipeline_run(name)
    echo(f"video tracking: project {name} ({len(pipeline.stages)} stages) started: run {run.name}")
    deadline = time.monotonic() + timeout_s
    p = projects.get(name)
    while time.monotonic() < deadline and p.status not in (ProjectStatus.WAITING, ProjectStatus.PAUSED):
        time.sleep(2)
        p = projects.get(name)
    if p.status != ProjectStatus.WAITING or p.waiting is None or not wait_for_form(p.waiting.run_id):
        echo(f"video tracking: {name} did not reach its approval: {p.status.value} {p.reason}")
        return False
    url = f"http://127.0.0.1:{cfg.prefect_port}/runs/flow-run/{p.waiting.run_id}"
    echo(f"video tracking: {name} waits for your decision after {p.waiting.stage}: open {url}, look at the log")
    echo("  (and reference_points.png in the stage's workspace), press Resume and choose continue, redo with")
    echo(f"  REFERENCE_POINTS=..., goto or stop; or: opsflow project resume {name} [--action redo --env K=V]")
    return True


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
        all_ok &= node_update_rollout(cfg, echo)
        all_ok &= spark_autoscale(cfg, echo)
        all_ok &= video_tracking(cfg, echo)
        all_ok &= ci_training(cfg, echo)
    return all_ok
