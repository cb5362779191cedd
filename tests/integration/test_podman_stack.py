"""The podman component for real: the Docker API on its socket, the local busybox image, containers via the adapter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from opsflow.adapters.docker_engine import DockerEngineClient, DockerEngineError
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.podman import BUSYBOX_IMAGE, PodmanComponent
from opsflow.stack.process import stack_processes
from tests.support import start_or_unavailable

pytestmark = pytest.mark.stack
PORT_OFFSET = 22000


def start_podman(home: Path) -> PodmanComponent:
    cfg = StackConfig(home=home).shifted(PORT_OFFSET)
    comp = PodmanComponent(cfg, child_env(cfg))
    start_or_unavailable(comp)
    return comp


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanComponent]:
    comp = start_podman(tmp_path_factory.mktemp("podman"))
    yield comp
    comp.stop()


@pytest.fixture
def engine(podman: PodmanComponent) -> DockerEngineClient:
    return DockerEngineClient(podman.cfg.docker_host)


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_api_answers_and_the_image_is_there(podman: PodmanComponent, engine: DockerEngineClient) -> None:
    assert engine.ping()
    assert engine.image_exists(BUSYBOX_IMAGE)
    status = podman.status()
    assert status.state == "up", status
    assert podman.start() is False


def test_a_container_runs_to_completion_and_is_removed(engine: DockerEngineClient) -> None:
    result = engine.run(BUSYBOX_IMAGE, ["echo", "hello-from-podman"], timeout=60)
    assert result.exit_code == 0
    assert "hello-from-podman" in result.logs
    client = engine.client()
    try:
        assert client.containers.list(all=True) == []
    finally:
        client.close()


def test_exit_code_and_stderr_are_reported(engine: DockerEngineClient) -> None:
    result = engine.run(BUSYBOX_IMAGE, ["sh", "-c", "echo oops >&2; exit 3"], timeout=60)
    assert result.exit_code == 3
    assert "oops" in result.logs


def test_bind_mount_env_and_workdir(engine: DockerEngineClient, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from-host\n")
    script = 'cat in.txt; echo "$GREETING" > out.txt'
    result = engine.run(
        BUSYBOX_IMAGE, ["sh", "-c", script], env={"GREETING": "from-container"}, volumes={tmp_path: "/work"},
        workdir="/work", timeout=60,
    )  # fmt: skip
    assert result.exit_code == 0, result.logs
    assert "from-host" in result.logs
    assert (tmp_path / "out.txt").read_text() == "from-container\n"


def test_missing_image_fails_at_once_without_a_pull(engine: DockerEngineClient) -> None:
    with pytest.raises(DockerEngineError, match="not on"):
        engine.run("docker.io/library/busybox:latest", ["true"])
    client = engine.client()
    try:
        # podman reports a failed pull inside the progress stream, not as an HTTP error.
        answer = client.api.pull("docker.io/library/busybox", tag="latest")
        assert "registry docker.io is blocked" in answer
    finally:
        client.close()


def test_prefect_docker_host_block_reaches_the_engine(podman: PodmanComponent) -> None:
    from prefect_docker.host import DockerHost

    client = DockerHost(base_url=podman.cfg.docker_host).get_client()
    try:
        assert client.ping()
        assert any(BUSYBOX_IMAGE in image.tags for image in client.images.list())
    finally:
        client.close()


def test_stop_ends_running_containers_and_restart_keeps_the_image(tmp_path_factory: pytest.TempPathFactory) -> None:
    comp = start_podman(tmp_path_factory.mktemp("podman-stop"))
    try:
        engine = DockerEngineClient(comp.cfg.docker_host)
        client = engine.client()
        image_id = client.images.get(BUSYBOX_IMAGE).id
        marker = uuid.uuid4().hex
        command = ["sh", "-c", f"sleep 600; echo {marker}"]
        client.containers.run(BUSYBOX_IMAGE, command, detach=True, network_mode="host")
        client.close()
        assert processes_with(marker), "the container's process should run"
        assert comp._conmons(), "podman should monitor the container with conmon"

        assert comp.stop()
        assert stack_processes(comp.cfg.home) == []
        assert not comp.paths.runroot_link.is_symlink()
        assert comp._conmons() == []
        assert processes_with(marker) == []

        comp.start()
        client = engine.client()
        try:
            assert client.images.get(BUSYBOX_IMAGE).id == image_id
            assert client.containers.list(all=True) == []
        finally:
            client.close()
    finally:
        comp.stop()
    assert stack_processes(comp.cfg.home) == []
