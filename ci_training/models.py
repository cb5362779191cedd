"""What a CI-triggered training is about: the project's settings, a GitLab push delivery, test and train results.

Pure data (pydantic, no I/O). :class:`CiProject` holds everything a project needs instead of a per-project
``.gitlab-ci.yml`` (thesis §8.2.5): where its GitLab is, its secrets, which branches build, the test command and
the training job with the thesis's Table 6.2 settings (``CPU_ONLY``, driver and executor memory, the RAPIDS
options of listing C.5). :class:`PushEvent` is the part of GitLab's ``Push Hook`` payload that matters
(``lib/gitlab/data_builder/push.rb``).

Example:
    >>> p = CiProject(project="ml/loans", api_token="t", webhook_secret="s")
    >>> p.cpu_only, p.test_command, p.status_names()
    (True, ['pytest', '-q'], ('opsflow/test', 'opsflow/train'))
    >>> str(p.webhook_secret)
    '**********'
    >>> PushEvent.model_validate({"ref": "refs/heads/main", "after": "a" * 40, "checkout_sha": "a" * 40,
    ...     "project_id": 7, "project": {"path_with_namespace": "ml/loans"}}).branch
    'main'
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

#: The ``after`` of a push that deleted its branch or tag (GitLab's ``Gitlab::Git::SHA1_BLANK_SHA``).
ZERO_SHA = "0" * 40
#: The commit status contexts ("name" in GitLab's API) of the two stages.
TEST_STATUS = "opsflow/test"
TRAIN_STATUS = "opsflow/train"
#: The repository's own override file (optional).
OVERRIDES_FILE = "opsflow-ci.yaml"


class CommitState(StrEnum):
    """GitLab's commit status states (``POST /projects/:id/statuses/:sha``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in (CommitState.SUCCESS, CommitState.FAILED, CommitState.CANCELED)


class CiProject(BaseModel):
    """One GitLab project trained by opsflow: the fields of its ``GitLabProject`` Block."""

    model_config = ConfigDict(extra="forbid")

    gitlab_url: str = Field(default="https://gitlab.com", description="Base URL of the GitLab instance.")
    project: str = Field(description="Project path with namespace (group/name) or numeric id, as GitLab knows it.")
    api_token: SecretStr = Field(description="GitLab token with the api scope: commit statuses and clone.")
    webhook_secret: SecretStr = Field(description="The secret token set in the project's webhook settings.")
    repository_url: str | None = Field(
        default=None, description="Clone URL; empty for the push payload's project.git_http_url."
    )
    branches: list[str] = Field(
        default_factory=lambda: ["*"], description="Branches that build (shell-style globs, e.g. main, release/*)."
    )
    test_command: list[str] = Field(
        default_factory=lambda: ["pytest", "-q"], description="Test stage: argument list run in the checkout."
    )
    entry_point: str = Field(default="train.py", description="Training application (a Python file of the repo).")
    arguments: list[str] = Field(default_factory=list, description="Arguments of the training application.")
    cpu_only: bool = Field(default=True, description="CPU_ONLY (Table 6.2): false trains on GPUs with RAPIDS.")
    driver_memory: str = Field(default="4g", description="DRIVER_MEMORY (Table 6.2): spark.driver.memory.")
    executor_memory: str = Field(default="8g", description="EXECUTOR_MEMORY (Table 6.2): spark.executor.memory.")
    executor_cores: int = Field(default=1, ge=1, description="spark.executor.cores.")
    cores_max: int | None = Field(default=None, ge=1, description="spark.cores.max: most cores of the application.")
    rapids_gpu_alloc_fraction: float = Field(
        default=1.0, gt=0, le=1, description="RAPIDS_GPU_ALLOC_FRACTION: spark.rapids.memory.gpu.allocFraction."
    )
    rapids_incompatible_ops: bool = Field(
        default=False, description="RAPIDS_INCOMPATIBLE_OPS: spark.rapids.sql.incompatibleOps.enabled."
    )
    rapids_debug: Literal["NONE", "STDOUT", "STDERR"] = Field(
        default="NONE", description="RAPIDS_DEBUG: spark.rapids.memory.gpu.debug."
    )
    rapids_gpu_pool: Literal["ARENA", "ASYNC", "DEFAULT", "NONE"] = Field(
        default="ARENA", description="RAPIDS_GPU_POOL: spark.rapids.memory.gpu.pool."
    )
    rapids_jars: list[str] = Field(
        default_factory=list, description="Jars of the GPU mode (rapids-4-spark, cudf, xgboost4j), as --jars."
    )
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Further --conf settings of the job.")
    spark_block: str = Field(default="local", description="Name of the SparkCluster Block to train on.")
    metrics_file: str = Field(default="metrics.json", description="JSON file of metrics the job writes.")
    model_dir: str = Field(default="model", description="Directory the job saves its model to.")
    main_metric: str = Field(default="accuracy", description="Metric shown in the train status's description.")
    workdir: str | None = Field(
        default=None, description="Directory of the checkouts (one per run); empty for the system's temp dir."
    )

    @property
    def pool(self) -> str:
        """The work pool the training runs on: ``gpu`` unless CPU_ONLY."""
        return "cpu" if self.cpu_only else "gpu"

    def status_names(self) -> tuple[str, str]:
        return TEST_STATUS, TRAIN_STATUS


class PushProject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | None = None
    path_with_namespace: str
    git_http_url: str | None = None
    default_branch: str | None = None
    web_url: str | None = None


class PushCommit(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    message: str = ""
    title: str = ""


class PushEvent(BaseModel):
    """The fields of a ``Push Hook`` delivery that decide and describe a CI run."""

    model_config = ConfigDict(extra="ignore")

    object_kind: str = "push"
    ref: str
    before: str = ZERO_SHA
    after: str
    checkout_sha: str | None
    project_id: int
    project: PushProject
    commits: list[PushCommit] = Field(default_factory=list)
    total_commits_count: int = 0
    push_options: dict[str, Any] = Field(default_factory=dict)
    user_username: str | None = None

    @property
    def branch(self) -> str | None:
        """The branch name of ``refs/heads/<name>``; None for tags and other refs."""
        prefix = "refs/heads/"
        return self.ref[len(prefix) :] if self.ref.startswith(prefix) else None

    @property
    def head_commit(self) -> PushCommit | None:
        """The commit checked out (GitLab lists the newest 20 commits, oldest first)."""
        for commit in self.commits:
            if commit.id == self.checkout_sha:
                return commit
        return self.commits[-1] if self.commits else None


class Verdict(BaseModel):
    """What the receiver does with a delivery: start a run, or answer 2xx with why not."""

    accepted: bool
    reason: str


class RepoOverrides(BaseModel):
    """``opsflow-ci.yaml`` of a repository: what it may change of its project's settings."""

    model_config = ConfigDict(extra="forbid")

    test_command: list[str] | None = Field(default=None, description="Replaces the project's test command.")
    entry_point: str | None = Field(default=None, description="Replaces the training application.")
    arguments: list[str] | None = Field(default=None, description="Replaces the training arguments.")


class TestCase(BaseModel):
    __test__ = False  # not a pytest test class

    name: str
    classname: str = ""
    outcome: Literal["passed", "failed", "error", "skipped"]
    time_s: float = 0.0
    message: str = ""


class TestReport(BaseModel):
    """A JUnit XML report, counted."""

    __test__ = False

    cases: list[TestCase] = Field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if c.outcome in ("failed", "error"))

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.outcome == "passed")
