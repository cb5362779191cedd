"""The ``ci-training`` flow: one GitLab push → a fresh checkout → the repo's tests → training on Spark.

Wiring only; the rules are in :mod:`ci_training` (triage, Spark arguments, the JUnit report, the repository's
``opsflow-ci.yaml``) and the I/O in its adapters (git, GitLab statuses, Prefect) and the Spark adapter.

The commit statuses per stage (``opsflow/test``, ``opsflow/train``) move ``pending → running →
success|failed|canceled`` and link to this run's page; a repeated state is a no-op on GitLab's side. Retries
cover infrastructure only (a status POST inside the adapter, the clone here), never a red test or a failed
training. A newer push on the same project and ref cancels this run (see :func:`supersede`): its Spark
application is killed and its statuses become ``canceled``.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import tempfile
import uuid
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect_shell import ShellOperation

from blocks import GitLabProject, SparkCluster, load_block
from ci_training.checkout import MissingCommit, checkout
from ci_training.gitlab import GitLabStatuses
from ci_training.junit import describe, parse_junit, report_rows
from ci_training.models import (
    OVERRIDES_FILE,
    TEST_STATUS,
    TRAIN_STATUS,
    ZERO_SHA,
    CiProject,
    CommitState,
)
from ci_training.overrides import apply_overrides, load_overrides
from ci_training.prefect_api import cancel_flow_run, superseded_runs, ui_url
from ci_training.rules import ref_tag
from ci_training.submit import parse_app_id, spark_submit_argv
from opsflow.adapters.spark import SparkError, spark_home
from opsflow.errors import InputError, OpsflowError


class StageFailed(OpsflowError):
    """The tests were red or the training failed: the run ends Failed (not retried)."""


class Statuses:
    """The run's two commit statuses, remembered so that a failure or a cancellation closes what is open."""

    def __init__(self, gitlab: GitLabStatuses, sha: str, ref: str, target_url: str) -> None:
        self.gitlab, self.sha, self.target_url = gitlab, sha, target_url
        self.branch = ref.removeprefix("refs/heads/")
        self.states: dict[str, CommitState] = {}

    def set(self, name: str, state: CommitState, description: str) -> None:
        self.gitlab.post(self.sha, name, state, ref=self.branch, target_url=self.target_url, description=description)
        self.states[name] = state

    def close_open(self, state: CommitState, description: str) -> None:
        for name in (TEST_STATUS, TRAIN_STATUS):
            if not self.states.get(name, CommitState.PENDING).final:
                self.set(name, state, description)


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")


@task(name="supersede-older-runs")
def supersede(settings: CiProject, ref: str, this_run: str, spark: SparkCluster) -> list[str]:
    """Cancel the older live runs of this project and ref: their run, their Spark app, their open statuses."""
    logger = get_run_logger()
    cancelled = []
    gitlab = GitLabStatuses.of(settings)
    for old in superseded_runs(ref_tag(settings.project, ref), this_run):
        app = _app_of(spark, str(old.id))
        if app is not None:
            spark.get_client().kill_app(app)
        final = cancel_flow_run(old.id, f"superseded by a newer push on {ref} (run {this_run})")
        sha = str(old.parameters.get("checkout_sha", ""))
        for status in gitlab.statuses(sha) if sha else []:
            if status.get("name") in (TEST_STATUS, TRAIN_STATUS) and status.get("status") in ("pending", "running"):
                gitlab.post(
                    sha,
                    str(status["name"]),
                    CommitState.CANCELED,
                    ref=ref.removeprefix("refs/heads/"),
                    target_url=status.get("target_url"),
                    description="superseded by a newer push",
                )
        logger.info("run %s of %s superseded (%s, Spark app %s)", old.name, sha[:8], final, app or "none")
        cancelled.append(str(old.id))
    return cancelled


def _app_name(run_id: str) -> str:
    return f"opsflow-ci-{run_id}"


def _app_of(spark: SparkCluster, run_id: str) -> str | None:
    """The live Spark application of a run, found by its name on the master."""
    try:
        app = spark.get_client().state().app_named(_app_name(run_id))
    except SparkError:
        return None
    return app.id if app is not None and app.state in ("WAITING", "RUNNING") else None


def _infrastructure_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a clone that failed on the way (network, server), not one whose commit is gone."""
    return not isinstance(state.result(raise_on_failure=False), MissingCommit | InputError)


@task(name="checkout", retries=2, retry_delay_seconds=3, retry_condition_fn=_infrastructure_failure)
def checkout_commit(settings: CiProject, url: str, sha: str, ref: str, dest: Path) -> Path:
    """A fresh checkout of exactly ``sha`` (HEAD verified); a SHA no longer in the repository is not retried."""
    return checkout(url, sha, dest, ref=ref, token=settings.api_token.get_secret_value() or None)


def _shell(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run an argument list through prefect-shell (every line streamed to the run log); exit code and lines."""
    with ShellOperation(commands=[shlex.join(argv)], working_dir=cwd, env=env) as op:
        proc = op.trigger()
        with contextlib.suppress(RuntimeError):  # a non-zero exit: the caller decides from the exit code
            proc.wait_for_completion()
        return proc.return_code if proc.return_code is not None else -1, proc.fetch_result()


@task(name="test-stage")
def run_tests(command: list[str], workdir: Path) -> dict[str, Any]:
    """The project's test command in the checkout; a JUnit report (pytest) becomes a table artifact."""
    report_file = workdir.parent / f"{workdir.name}-junit.xml"
    env = {"PYTEST_ADDOPTS": f"--junitxml={report_file}"}
    code, _ = _shell(command, workdir, env)
    summary = f"exit code {code}"
    if report_file.exists():
        report = parse_junit(report_file.read_text(), str(report_file))
        create_table_artifact(key="ci-test-report", table=report_rows(report), description=describe(report))
        summary = describe(report)
    return {"exit_code": code, "summary": summary}


@task(name="train-stage")
def run_training(settings: CiProject, workdir: Path, spark: SparkCluster, run_id: str) -> dict[str, Any]:
    """spark-submit in client mode to the cluster; the result from the exit code and the master's /json/."""
    env = {"SPARK_HOME": spark.spark_home or spark_home()}
    argv = spark_submit_argv(
        f"{env['SPARK_HOME']}/bin/spark-submit",
        spark.master_url,
        settings,
        settings.entry_point,
        settings.arguments,
        _app_name(run_id),
    )
    code, lines = _shell(argv, workdir, env)
    app_id = next((a for a in map(parse_app_id, lines) if a), None)
    state = "UNKNOWN"
    try:
        found = spark.get_client().state().app_named(_app_name(run_id))
        if found is not None:
            app_id, state = found.id, found.state
    except SparkError:
        pass
    metrics: dict[str, Any] = {}
    metrics_path = workdir / settings.metrics_file
    if code == 0 and metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
    return {
        "exit_code": code,
        "app_id": app_id,
        "app_state": state,
        "metrics": metrics,
        "model_dir": str(workdir / settings.model_dir),
    }


@flow(name="ci-training", description="A GitLab push: fresh checkout, the repository's tests, training on Spark.")
def ci_training(
    project: str,
    ref: str,
    checkout_sha: str,
    before: str = ZERO_SHA,
    commit_title: str = "",
    delivery: str = "",
) -> dict[str, Any]:
    """Test, then train, the commit ``checkout_sha`` of the project whose ``GitLabProject`` Block is ``project``."""
    logger = get_run_logger()
    block = load_block(GitLabProject, project)
    settings = block.settings()
    spark = load_block(SparkCluster, settings.spark_block)
    run_id = str(flow_run.get_id() or uuid.uuid4())
    statuses = Statuses(block.get_client(), checkout_sha, ref, ui_url(_api_url(), run_id))
    logger.info("%s %s@%s: %s (delivery %s)", settings.project, ref, checkout_sha[:8], commit_title, delivery)
    supersede(settings, ref, run_id, spark)
    statuses.set(TEST_STATUS, CommitState.PENDING, "checking out")
    statuses.set(TRAIN_STATUS, CommitState.PENDING, "waiting for the tests")
    root = Path(settings.workdir or Path(tempfile.gettempdir()) / "opsflow-ci")
    try:
        return _test_and_train(settings, statuses, spark, root / run_id, ref, checkout_sha, run_id)
    except BaseException as exc:  # a crash, a cancellation, a failed stage: nothing stays pending
        reason = "canceled" if not isinstance(exc, Exception) else f"failed: {str(exc).splitlines()[0][:200]}"
        state = CommitState.CANCELED if not isinstance(exc, Exception) else CommitState.FAILED
        try:
            statuses.close_open(state, reason)
        except OpsflowError as status_exc:
            logger.warning("statuses not closed: %s", status_exc)
        raise


def _test_and_train(
    settings: CiProject, statuses: Statuses, spark: SparkCluster, dest: Path, ref: str, sha: str, run_id: str
) -> dict[str, Any]:
    logger = get_run_logger()
    url = settings.repository_url or _clone_url(settings)
    try:
        workdir = checkout_commit(settings, url, sha, ref, dest)
    except MissingCommit as exc:
        statuses.set(TEST_STATUS, CommitState.FAILED, str(exc))
        statuses.set(TRAIN_STATUS, CommitState.CANCELED, "not run: no checkout")
        raise
    overrides_file = workdir / OVERRIDES_FILE
    if overrides_file.exists():
        try:
            settings = apply_overrides(settings, load_overrides(overrides_file.read_text(), OVERRIDES_FILE))
        except InputError as exc:
            statuses.set(TEST_STATUS, CommitState.FAILED, str(exc).splitlines()[0])
            statuses.set(TRAIN_STATUS, CommitState.CANCELED, f"not run: {OVERRIDES_FILE} is invalid")
            raise
    statuses.set(TEST_STATUS, CommitState.RUNNING, shlex.join(settings.test_command)[:200])
    tests = run_tests(settings.test_command, workdir)
    if tests["exit_code"] != 0:
        statuses.set(TEST_STATUS, CommitState.FAILED, tests["summary"])
        statuses.set(TRAIN_STATUS, CommitState.CANCELED, "not run: the tests failed")
        raise StageFailed(f"tests failed ({tests['summary']}): no training")
    statuses.set(TEST_STATUS, CommitState.SUCCESS, tests["summary"])
    statuses.set(TRAIN_STATUS, CommitState.RUNNING, f"spark-submit {settings.entry_point} to {spark.master_url}")
    result = run_training(settings, workdir, spark, run_id)
    if result["exit_code"] != 0:
        statuses.set(TRAIN_STATUS, CommitState.FAILED, f"spark-submit exited with {result['exit_code']}")
        raise StageFailed(f"training failed: spark-submit exited with {result['exit_code']} (app {result['app_id']})")
    metrics = result["metrics"]
    if metrics:
        create_table_artifact(
            key="ci-training-metrics",
            table=[{"metric": k, "value": v} for k, v in metrics.items()],
            description=f"{settings.project} {sha[:8]}: metrics of {settings.entry_point}",
        )
    create_markdown_artifact(
        key="ci-training-model",
        markdown=f"**Model** of {settings.project} `{sha[:8]}`: `{result['model_dir']}`\n\n"
        f"Spark application `{result['app_id']}` ({result['app_state']})",
    )
    main = metrics.get(settings.main_metric)
    shown = f"{settings.main_metric}={main:.4f}" if isinstance(main, int | float) else "trained"
    statuses.set(TRAIN_STATUS, CommitState.SUCCESS, shown)
    logger.info("%s@%s trained: %s (app %s)", settings.project, sha[:8], shown, result["app_id"])
    return {"tests": tests, **result}


def _clone_url(settings: CiProject) -> str:
    """The clone URL GitLab gives for the project (when the Block sets no repository_url)."""
    info = GitLabStatuses.of(settings).project_info()
    url = info.get("http_url_to_repo") or info.get("git_http_url")
    if not url:
        raise InputError("GitLabProject", [(0, "repository_url", "GitLab gave no clone URL: set repository_url")])
    return str(url)


__all__ = ["ci_training"]
