"""DockerRunner against the local stack's podman (Docker API) with the local busybox image."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.podman import BUSYBOX_IMAGE, PodmanComponent
from stage_pipeline.docker_runner import DockerRunner, container_kwargs
from stage_pipeline.runners import STAGE_LABEL, RunOutcome, StageJob
from tests.support import start_or_unavailable

pytestmark = pytest.mark.stack
PORT_OFFSET = 30000
NOBODY = 65534


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Docker API URL of a podman started for this module (start_or_unavailable: fail in CI, skip elsewhere)."""
    cfg = StackConfig(home=tmp_path_factory.mktemp("sp-podman")).shifted(PORT_OFFSET)
    comp = PodmanComponent(cfg, child_env(cfg))
    start_or_unavailable(comp)
    try:
        yield cfg.docker_host
    finally:
        comp.stop()


@pytest.fixture(scope="module")
def client(docker_host: str) -> Iterator[docker.DockerClient]:
    with contextlib.closing(docker.DockerClient(base_url=docker_host, timeout=60)) as c:
        yield c


def run(client: docker.DockerClient, job: StageJob, abort_when: str | None = None) -> tuple[RunOutcome, list[str]]:
    lines: list[str] = []
    outcome = DockerRunner(client).run(
        job, lines.append, lambda: abort_when is not None and any(abort_when in line for line in lines)
    )
    return outcome, lines


def stage_containers(client: docker.DockerClient, name: str) -> list[object]:
    return list(client.containers.list(all=True, filters={"label": f"{STAGE_LABEL}={name}"}))


def test_lines_exit_code_and_output_file(client: docker.DockerClient, tmp_path: Path) -> None:
    resources = tmp_path / "pool"
    resources.mkdir()
    (resources / "model.txt").write_text("weights\n")
    workdir = tmp_path / "ws"
    workdir.mkdir()
    script = 'echo frame 1/2; cat /resources/model.txt; echo "$GREETING" >&2; echo hello > /workspace/out.txt; exit 3'
    job = StageJob(
        name="sp-lines", image=BUSYBOX_IMAGE, argv=["sh", "-c", script], env={"GREETING": "hi"}, workdir=workdir,
        resources=resources,
    )  # fmt: skip
    outcome, lines = run(client, job)
    assert outcome.exit_code == 3 and outcome.error is None
    assert not (outcome.aborted or outcome.timed_out)
    # stdout keeps its order; where stderr's line lands among them is the engine's choice.
    assert [line for line in lines if line != "hi"] == ["frame 1/2", "weights"] and "hi" in lines
    assert (workdir / "out.txt").read_text() == "hello\n"
    assert stage_containers(client, "sp-lines") == []


def test_a_quiet_start_is_followed(client: docker.DockerClient, tmp_path: Path) -> None:
    # podman answers a log request only once the first line exists; the runner must not block on it.
    job = StageJob(name="sp-quiet", image=BUSYBOX_IMAGE, argv=["sh", "-c", "sleep 1; echo late; exit 4"],
                   workdir=tmp_path)  # fmt: skip
    outcome, lines = run(client, job)
    assert (outcome.exit_code, lines) == (4, ["late"])


def test_a_stage_quiet_for_longer_than_the_client_timeout(docker_host: str, tmp_path: Path) -> None:
    # The client's timeout is for API calls; a stage may print nothing for hours.
    job = StageJob(name="sp-long", image=BUSYBOX_IMAGE, argv=["sh", "-c", "sleep 4; echo late; exit 5"],
                   workdir=tmp_path)  # fmt: skip
    with contextlib.closing(docker.DockerClient(base_url=docker_host, timeout=2)) as short:
        outcome, lines = run(short, job)
    assert (outcome.exit_code, outcome.error, lines) == (5, None, ["late"])


def test_resources_are_read_only(client: docker.DockerClient, tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "pool").mkdir()
    job = StageJob(
        name="sp-ro", image=BUSYBOX_IMAGE, argv=["sh", "-c", "touch /resources/x 2>/dev/null || echo refused"],
        workdir=tmp_path / "ws", resources=tmp_path / "pool",
    )  # fmt: skip
    outcome, lines = run(client, job)
    # touch's own message goes to stderr, which Docker does not order against stdout
    assert outcome.succeeded and lines == ["refused"]
    assert not (tmp_path / "pool" / "x").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to nobody needs root")
def test_container_root_cannot_write_a_sealed_file(client: docker.DockerClient, tmp_path: Path) -> None:
    sealed = tmp_path / "sealed.txt"
    sealed.write_text("original\n")
    os.chown(sealed, NOBODY, NOBODY)
    sealed.chmod(0o444)
    script = "echo changed > sealed.txt || echo write-refused; chmod 644 sealed.txt || echo chmod-refused"
    _, lines = run(client, StageJob(name="sp-seal", image=BUSYBOX_IMAGE, argv=["sh", "-c", script], workdir=tmp_path))
    assert "write-refused" in lines and "chmod-refused" in lines, lines
    assert "sh: can't create sealed.txt: Permission denied" in lines  # stderr lines arrive whole
    assert sealed.read_text() == "original\n" and sealed.stat().st_mode & 0o777 == 0o444


def test_abort_kills_and_removes_the_container(client: docker.DockerClient, tmp_path: Path) -> None:
    argv = ["sh", "-c", "echo started; sleep 1000"]
    job = StageJob(name="sp-abort", image=BUSYBOX_IMAGE, argv=argv, workdir=tmp_path)
    outcome, lines = run(client, job, abort_when="started")
    assert outcome.aborted and not outcome.timed_out
    assert outcome.exit_code is not None and outcome.exit_code != 0
    assert lines == ["started"]
    assert stage_containers(client, "sp-abort") == []


def test_timeout_kills_and_removes_the_container(client: docker.DockerClient, tmp_path: Path) -> None:
    job = StageJob(name="sp-timeout", image=BUSYBOX_IMAGE, argv=["sleep", "1000"], workdir=tmp_path, timeout_s=1)
    outcome, _ = run(client, job)
    assert outcome.timed_out and not outcome.aborted
    assert stage_containers(client, "sp-timeout") == []


def test_missing_image_is_an_error_without_a_pull(client: docker.DockerClient, tmp_path: Path) -> None:
    job = StageJob(name="sp-missing", image="localhost/sp-no-such-image:1", argv=["true"], workdir=tmp_path)
    outcome, lines = run(client, job)
    assert outcome.error is not None and "not present" in outcome.error
    assert outcome.exit_code is None and lines == []
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get("localhost/sp-no-such-image:1")
        pytest.fail("the runner must not pull")


def test_cpu_and_memory_limits_reach_the_container(client: docker.DockerClient, tmp_path: Path) -> None:
    limits = {"cpus": 0.5, "memory_bytes": 64 << 20}
    job = StageJob(name="sp-limits", image=BUSYBOX_IMAGE, argv=["true"], workdir=tmp_path, **limits)
    container = client.containers.create(**container_kwargs(job))
    try:
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == host["MemorySwap"] == 64 << 20  # no swap beyond the limit
    finally:
        container.remove(force=True)
    # And the engine applies them: the stage reads its own memory limit from its cgroup (v2 or v1 layout).
    script = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    outcome, lines = run(client, job.model_copy(update={"name": "sp-limits-run", "argv": ["sh", "-c", script]}))
    assert outcome.succeeded and lines == [str(64 << 20)], (outcome, lines)
