"""CI-triggered training: a GitLab push runs the repository's tests, then trains on Spark, with commit statuses.

The path of one push: the webhook receiver (:mod:`ci_training.receiver`, served by :mod:`ci_training.service`)
checks the token, decides (:func:`triage`) and starts exactly one ``ci-training`` run per delivery (the
delivery's idempotency key); the flow (``flows/ci_training_run.py``) checks out the commit (:mod:`.checkout`), runs
the test command, submits the training with :func:`spark_submit_argv` and posts the commit statuses
(:mod:`.gitlab`). Everything a project needs is its ``GitLabProject`` Block (:class:`CiProject`); a repository may
add ``opsflow-ci.yaml`` (:func:`load_overrides`).

Pure modules (no I/O): ``models``, ``rules`` (what a delivery starts, dedup keys, run parameters), ``submit``
(spark-submit arguments: the thesis's Table 6.2 and the RAPIDS confs of listing C.5), ``junit`` (test reports),
``overrides`` (``opsflow-ci.yaml``).
I/O modules: ``receiver`` (the ASGI app, its I/O injected), ``service`` (the receiver process), ``prefect_api``
(Blocks, runs, events, cancelling), ``gitlab`` (python-gitlab: commit statuses), ``checkout`` (git).
Importing this package loads only the pure modules.

Example:
    >>> p = CiProject(project="ml/loans", api_token="t", webhook_secret="s", cpu_only=False, executor_cores=4)
    >>> confs = training_confs(p)
    >>> p.pool, confs["spark.plugins"], confs["spark.task.resource.gpu.amount"]
    ('gpu', 'com.nvidia.spark.SQLPlugin', '0.25')
"""

from ci_training.models import (
    OVERRIDES_FILE,
    TEST_STATUS,
    TRAIN_STATUS,
    ZERO_SHA,
    CiProject,
    CommitState,
    PushEvent,
    RepoOverrides,
    TestReport,
    Verdict,
)
from ci_training.overrides import apply_overrides, load_overrides
from ci_training.rules import delivery_key, ref_tag, run_parameters, triage
from ci_training.submit import parse_app_id, spark_submit_argv, training_confs

__all__ = [
    "OVERRIDES_FILE",
    "TEST_STATUS",
    "TRAIN_STATUS",
    "ZERO_SHA",
    "CiProject",
    "CommitState",
    "PushEvent",
    "RepoOverrides",
    "TestReport",
    "Verdict",
    "apply_overrides",
    "delivery_key",
    "load_overrides",
    "parse_app_id",
    "ref_tag",
    "run_parameters",
    "spark_submit_argv",
    "training_confs",
    "triage",
]
