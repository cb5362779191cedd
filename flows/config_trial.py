"""The ``config-trial`` flow: variants of a streaming application on the same input, round by round, compared.

Wiring only; the rules are in :mod:`config_trials` (definition, input, statistics, verdicts) and the I/O in its
Spark runner and report writer. Each variant's round is a child flow run (``<variant> round <n>``), so the
Prefect UI shows every one with its logs; a round that fails makes its child run Failed with the reason, the
variant is not run again, and the trial goes on. A ``cpu`` variant's rounds run inside the trial's own run (on
the ``cpu`` pool); a ``gpu`` variant's are runs of the ``variant-round/gpu`` deployment, submitted by a worker of
the ``gpu`` pool (D6b). Either way a round's result is the ``result.json`` it left in the trial folder. After
every round: a progress artifact and, in sequential stopping mode, a look at the verdicts; at the end the report
(markdown artifact, and ``report.md``, ``report.json`` and the plots in the trial folder, rebuilt any time by
``opsflow trials report``).
"""

from __future__ import annotations

import contextvars
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast
from uuid import UUID, uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import run_deployment
from prefect.states import Failed

from blocks import SparkCluster, load_block
from config_trials.definition import TrialDefinition, load_definition
from config_trials.judge import RoundResult, judge
from config_trials.measures import parallel_shortfall, round_order
from config_trials.report import render_markdown, write_report
from config_trials.spark_runner import Peers, SparkTarget, default_conf, record_result, round_dir, run_round
from opsflow.adapters.prefect_pools import online_workers
from opsflow.adapters.spark import spark_home
from opsflow.errors import OpsflowError


class VariantRoundFailed(OpsflowError):
    """A variant's round ended without a result (the application crashed, never started, or did not stop)."""


#: how long the trial waits for a pool run's round beyond its feed: start-up, stop, a worker's polling
POOL_ROUND_WAIT_S = 600.0


class ClusterTooSmall(OpsflowError):
    """Parallel mode needs more free cores or memory than the Spark workers have (M5)."""


def spark_target(spark: SparkCluster) -> SparkTarget:
    """Where the variants run: the Block's master, its Spark distribution, this interpreter."""
    home = spark.spark_home or spark_home()
    return SparkTarget(
        master=spark.master_url,
        spark_submit=f"{home}/bin/spark-submit",
        env={**os.environ, "SPARK_HOME": home},
        conf=default_conf(sys.executable),
    )


@flow(name="variant-round", flow_run_name="{variant} round {round_number}")
def variant_round(
    spark_block: str,
    definition: TrialDefinition,
    definition_dir: str,
    variant: str,
    round_number: int,
    trial_dir: str,
    peers: Peers | None = None,
) -> RoundResult:
    """One variant's round on Spark (a child run of the trial); Failed with the reason when it failed.

    ``peers``: in parallel mode, the variants of this round, which start their feeds together. The round loads
    the ``SparkCluster`` Block itself: a child run's parameters are stored on the server and shown in the UI,
    so they carry the Block's name, never an environment.
    """
    logger = get_run_logger()
    target = spark_target(load_block(SparkCluster, spark_block))
    [spec] = [v for v in definition.variants if v.name == variant]
    result = run_round(
        target, definition, Path(definition_dir), spec, round_number - 1, Path(trial_dir), logger.info, peers
    )
    if result.failed:
        raise VariantRoundFailed(f"{variant} round {round_number}: {result.failed}")
    logger.info("%s round %d: %s", variant, round_number, result.values)
    return result


def _round_result(out: Path, variant: str, round_index: int, state: State[Any]) -> RoundResult:
    """The round as its runner recorded it (a failure's reason without Prefect's wrapping), else the state's."""
    recorded = round_dir(out, round_index, variant) / "result.json"
    if recorded.exists():
        result = RoundResult.model_validate_json(recorded.read_text())
        if state.is_completed() or result.failed:
            return result
    reason = "it ended without a recorded result" if state.is_completed() else state.message or state.name
    return record_result(out, RoundResult(variant=variant, round=round_index, failed=reason))


def _round_on_pool(pool: str, parameters: dict[str, Any], wait_s: float) -> State[Any]:
    """D6b: one round as a run of ``variant-round/<pool>`` (a child of the trial's run); its final state."""
    if not online_workers(pool):
        return Failed(message=f"no worker of the {pool} pool is online: a {pool} variant runs only where one is")
    run = cast(FlowRun, run_deployment(f"variant-round/{pool}", parameters=parameters, timeout=wait_s))  # sync here
    if run.state is None or not run.state.is_final():
        return Failed(message=f"its run on the {pool} pool did not end within {wait_s:g} s")
    return run.state


@flow(name="config-trial", log_prints=True)
def config_trial(definition_path: str, trial_dir: str, spark_block: str = "local") -> dict[str, Any]:
    """Run every round of the trial in ``definition_path``, keep its raw data in ``trial_dir``, report."""
    logger = get_run_logger()
    path = Path(definition_path).resolve()
    definition = load_definition(path)
    out = Path(trial_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "definition.yaml").write_text(path.read_text())
    spark = load_block(SparkCluster, spark_block)
    if definition.mode == "parallel":
        workers = spark.get_client().state().alive_workers
        free_cores, free_memory = sum(w.coresfree for w in workers), sum(w.memoryfree for w in workers)
        shortfall = parallel_shortfall(definition, default_conf(sys.executable), free_cores, free_memory)
        if shortfall:
            raise ClusterTooSmall(f"{shortfall} at {spark.master_url}: run it in sequential mode or add workers")
    progress: UUID = create_progress_artifact(  # type: ignore[assignment]  # sync in a sync flow
        0.0, key=f"trial-{definition.name}-progress", description=f"rounds of trial {definition.name}"
    )
    results: list[RoundResult] = []
    failed: set[str] = set()
    names = [v.name for v in definition.variants]
    pools = {v.name: v.pool for v in definition.variants}
    for r in range(definition.rounds):
        live = [n for n in names if n not in failed]
        if not live:
            logger.warning("every variant failed: no round %d", r + 1)
            break

        parallel = definition.mode == "parallel"
        peers = Peers(variants=live, key=uuid4().hex) if parallel else None

        def one(name: str, r: int = r, peers: Peers | None = peers) -> State[Any]:
            if pools[name] == "cpu":
                return variant_round(
                    spark_block, definition, str(path.parent), name, r + 1, str(out), peers, return_state=True
                )
            parameters = {
                "spark_block": spark_block,
                "definition": definition.model_dump(mode="json"),
                "definition_dir": str(path.parent),
                "variant": name,
                "round_number": r + 1,
                "trial_dir": str(out),
                "peers": peers.model_dump() if peers else None,
            }
            return _round_on_pool(pools[name], parameters, wait_s=POOL_ROUND_WAIT_S + definition.round_s)

        if not parallel:
            states = [(name, one(name)) for name in round_order(live, definition.seed, r)]
        else:  # parallel: every variant's round at once (each application capped with spark.cores.max)
            # Each thread runs in a copy of this context, so that Prefect sees the trial's run as the parent.
            with ThreadPoolExecutor(max_workers=len(live)) as pool:
                futures = [pool.submit(contextvars.copy_context().run, one, name) for name in live]
                states = [(name, f.result()) for name, f in zip(live, futures, strict=True)]
        for name, state in states:
            result = _round_result(out, name, r, state)
            results.append(result)
            if result.failed:
                failed.add(name)
                logger.warning("%s round %d failed: %s", name, r + 1, result.failed)
        update_progress_artifact(progress, 100.0 * (r + 1) / definition.rounds)
        looking = definition.stop_early_after is not None and r + 1 >= definition.stop_early_after
        if looking and judge(definition, results).decided:
            logger.info("every comparison is decided after %d rounds: stopping", r + 1)
            break
    report = write_report(out, definition)
    create_markdown_artifact(
        render_markdown(definition, report),
        key=f"trial-{definition.name}",
        description=f"verdicts of trial {definition.name}",
    )
    logger.info("winner: %s (report in %s)", report.winner or "none", out / "report.md")
    return report.model_dump()
