"""`stack-check`: proves each component of the stack works end to end, and reports a table in the Prefect UI.

Slurm runs a two-node job whose output is read back; Spark runs a small PySpark job on the standalone cluster;
Prometheus is asked whether it scrapes the Spark master; the Docker engine runs a container. Each check is a task,
so one failure does not hide the others; the flow fails when any check fails.

Example:
    $ opsflow demo                      # through the deployment, on the cpu pool
    >>> # stack_check(block_name="local")  # in-process, against the Blocks named "local"
"""

from __future__ import annotations

import uuid
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.futures import wait
from pydantic import BaseModel

from blocks import DockerEngine, PrometheusServer, SlurmCluster, SparkCluster, load_block


class CheckResult(BaseModel):
    component: str
    ok: bool
    detail: str


@task(task_run_name="slurm: 2-node job")
def check_slurm(block_name: str) -> str:
    cluster = load_block(SlurmCluster, block_name)
    out = Path(cluster.shared_dir) / "stack-check" / f"slurm-{uuid.uuid4().hex[:8]}.out"
    out.parent.mkdir(parents=True, exist_ok=True)
    job = cluster.get_client().submit(
        # One step task per node: each prints the node it ran on.
        "#!/bin/sh\nsrun --ntasks-per-node=1 sh -c 'echo ran-on=$SLURMD_NODENAME'\n",
        nodes=2,
        partition=cluster.partition,
        output=out,
        wait=True,
    )
    text = out.read_text()
    nodes = sorted(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ran-on="))
    if not job.ok or len(nodes) != 2:
        raise RuntimeError(f"job {job.job_id} ended {job.state}; output: {text!r}")
    return f"job {job.job_id} {job.state} on {job.node_list}"


@task(task_run_name="spark: PySpark job")
def check_spark(block_name: str) -> str:
    cluster = load_block(SparkCluster, block_name)
    state = cluster.get_client().state()
    # run_sum_of_squares checks the cluster's answer against the closed form and raises when they differ.
    result = cluster.run_sum_of_squares(n=100_000, partitions=4)
    return f"{len(state.alive_workers)} workers alive; app {result.app_id} in {result.seconds:.1f} s"


@task(task_run_name="prometheus: scrapes the Spark master", retries=6, retry_delay_seconds=5)
def check_prometheus(block_name: str) -> str:
    # Retried: right after `up`, Prometheus may not have scraped the master yet.
    samples = load_block(PrometheusServer, block_name).get_client().query('up{job="spark-master"}')
    if not samples or samples[0].value != 1.0:
        raise RuntimeError(f'up{{job="spark-master"}} is {[s.value for s in samples]}, expected [1.0]')
    return f'up{{job="spark-master"}} = 1 ({samples[0].labels.get("instance", "")})'


@task(task_run_name="docker: run a container")
def check_docker(block_name: str) -> str:
    engine = load_block(DockerEngine, block_name)
    result = engine.get_client().run(engine.check_image, ["echo", "hello-from-container"])
    if result.exit_code != 0 or "hello-from-container" not in result.logs:
        raise RuntimeError(f"container exited {result.exit_code}: {result.logs!r}")
    return f"{engine.check_image} ran, exit 0"


CHECKS = {"slurm": check_slurm, "spark": check_spark, "prometheus": check_prometheus, "docker": check_docker}


@flow(name="stack-check", log_prints=True)
def stack_check(block_name: str = "local", components: list[str] | None = None) -> list[CheckResult]:
    """Run every check (or those named in ``components``) and publish a table artifact ``stack-check``."""
    logger = get_run_logger()
    names = components or list(CHECKS)
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown components {unknown}; known: {sorted(CHECKS)}")
    futures = {name: CHECKS[name].submit(block_name) for name in names}
    wait(list(futures.values()))
    results = []
    for name, future in futures.items():
        state = future.state
        ok = state.is_completed()
        detail = str(future.result()) if ok else str(state.message or state.name)
        if not ok:
            try:
                future.result()
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
        results.append(CheckResult(component=name, ok=ok, detail=detail))
        logger.info("%s: %s (%s)", name, "ok" if ok else "FAILED", detail)
    create_table_artifact(
        key="stack-check",
        table=[r.model_dump() for r in results],
        description="Each component of the stack, checked end to end",
    )
    failed = [r.component for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"stack check failed for: {', '.join(failed)}")
    return results
