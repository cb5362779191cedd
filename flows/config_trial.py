"""The ``config-trial`` flow: variants of a streaming application on the same input, round by round, compared.

Wiring only; the rules are in :mod:`config_trials` (definition, input, statistics, verdicts) and the I/O in its
Spark runner and report writer. Each variant's round is a child flow run (``<variant> round <n>``), so the
Prefect UI shows every one with its logs; a round that fails makes its child run Failed with the reason, the
variant is not run again, and the trial goes on. After every round: a progress artifact and, in sequential
stopping mode, a look at the verdicts; at the end the report (markdown artifact, and ``report.md``,
``report.json`` and the plots in the trial folder, rebuilt any time by ``opsflow trials report``).
"""

from __future__ import annotations

import contextvars
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from blocks import SparkCluster, load_block
from config_trials.definition import TrialDefinition, load_definition
from config_trials.judge import RoundResult, judge
from config_trials.measures import round_order
from config_trials.report import render_markdown, write_report
from config_trials.spark_runner import SparkTarget, default_conf, round_dir, run_round
from opsflow.adapters.spark import spark_home
from opsflow.errors import OpsflowError


class VariantRoundFailed(OpsflowError):
    """A variant's round ended without a result (the application crashed, never started, or did not stop)."""


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
    target: SparkTarget,
    definition: TrialDefinition,
    definition_dir: str,
    variant: str,
    round_number: int,
    trial_dir: str,
) -> RoundResult:
    """One variant's round on Spark (a child run of the trial); Failed with the reason when it failed."""
    logger = get_run_logger()
    [spec] = [v for v in definition.variants if v.name == variant]
    result = run_round(target, definition, Path(definition_dir), spec, round_number - 1, Path(trial_dir), logger.info)
    if result.failed:
        raise VariantRoundFailed(f"{variant} round {round_number}: {result.failed}")
    logger.info("%s round %d: %s", variant, round_number, result.values)
    return result


def _failed_round(out: Path, variant: str, round_index: int, message: str) -> RoundResult:
    """The failed round as the runner recorded it (its reason without Prefect's wrapping), else the message."""
    recorded = round_dir(out, round_index, variant) / "result.json"
    if recorded.exists():
        return RoundResult.model_validate_json(recorded.read_text())
    return RoundResult(variant=variant, round=round_index, failed=message)


@flow(name="config-trial", log_prints=True)
def config_trial(definition_path: str, trial_dir: str, spark_block: str = "local") -> dict[str, Any]:
    """Run every round of the trial in ``definition_path``, keep its raw data in ``trial_dir``, report."""
    logger = get_run_logger()
    path = Path(definition_path).resolve()
    definition = load_definition(path)
    out = Path(trial_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "definition.yaml").write_text(path.read_text())
    target = spark_target(load_block(SparkCluster, spark_block))
    progress: UUID = create_progress_artifact(  # type: ignore[assignment]  # sync in a sync flow
        0.0, key=f"trial-{definition.name}-progress", description=f"rounds of trial {definition.name}"
    )
    results: list[RoundResult] = []
    failed: set[str] = set()
    names = [v.name for v in definition.variants]
    for r in range(definition.rounds):
        live = [n for n in names if n not in failed]
        if not live:
            logger.warning("every variant failed: no round %d", r + 1)
            break

        def one(name: str, r: int = r) -> Any:
            return variant_round(target, definition, str(path.parent), name, r + 1, str(out), return_state=True)

        if definition.mode == "sequential":
            states = [(name, one(name)) for name in round_order(live, definition.seed, r)]
        else:  # parallel: every variant's round at once (each application capped with spark.cores.max)
            # Each thread runs in a copy of this context, so that Prefect sees the trial's run as the parent.
            with ThreadPoolExecutor(max_workers=len(live)) as pool:
                futures = [pool.submit(contextvars.copy_context().run, one, name) for name in live]
                states = [(name, f.result()) for name, f in zip(live, futures, strict=True)]
        for name, state in states:
            if state.is_completed():
                results.append(state.result())
            else:
                failed.add(name)
                results.append(_failed_round(out, name, r, state.message or "failed"))
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
