"""The generated podman configuration, the busybox rootfs and the Docker bind specs (no I/O)."""

from __future__ import annotations

import io
import tarfile
import tomllib
from pathlib import Path

import pytest

from opsflow.adapters.docker_engine import bind_specs
from opsflow.stack.config import StackConfig
from opsflow.stack.podman import (
    BUSYBOX_IMAGE,
    MAX_RUNROOT,
    RUNROOT_LINK_DIR,
    PodmanComponent,
    PodmanPaths,
    applet_paths,
    busybox_rootfs_tar,
    containers_conf,
    registries_conf,
    storage_conf,
)

PATHS = PodmanPaths(Path("/h/podman"))


def test_containers_conf_uses_runc_cgroupfs_file_events_and_our_ulimits() -> None:
    conf = tomllib.loads(containers_conf(PATHS))
    engine = conf["engine"]
    assert engine["runtime"] == "runc"
    assert engine["cgroup_manager"] == "cgroupfs"
    assert engine["events_logger"] == "file"
    assert engine["lock_type"] == "file"
    assert conf["containers"]["default_ulimits"] == ["nofile=20000:20000", "nproc=32768:32768"]


def test_containers_conf_keeps_every_path_under_root_and_static_dir_default() -> None:
    conf = tomllib.loads(containers_conf(PATHS))
    paths = [conf["engine"]["tmp_dir"], conf["engine"]["image_copy_tmp_dir"], conf["network"]["network_config_dir"]]
    assert all(p.startswith("/h/podman/") for p in paths)
    assert "static_dir" not in conf["engine"]


def test_paths_with_quotes_stay_valid_toml() -> None:
    odd = PodmanPaths(Path('/h/we"ird\\dir/podman'))
    assert tomllib.loads(storage_conf(odd))["storage"]["graphroot"] == '/h/we"ird\\dir/podman/storage'
    assert tomllib.loads(containers_conf(odd))["engine"]["tmp_dir"] == '/h/we"ird\\dir/podman/run/libpod'


def test_storage_conf_puts_graphroot_under_root_and_runroot_behind_the_short_link() -> None:
    conf = tomllib.loads(storage_conf(PATHS))["storage"]
    assert conf == {"driver": "vfs", "graphroot": "/h/podman/storage", "runroot": f"{PATHS.runroot_link}/storage"}
    assert tomllib.loads(storage_conf(PATHS, driver="overlay"))["storage"]["driver"] == "overlay"


def test_runroot_stays_within_podmans_limit_for_any_home() -> None:
    deep = PodmanPaths(Path("/tmp/pytest-of-someone/pytest-1234/a-rather-long-test-name0/podman"))
    assert len(str(deep.runroot)) <= MAX_RUNROOT
    assert deep.runroot_link.parent == RUNROOT_LINK_DIR
    assert deep.runroot_link != PATHS.runroot_link
    assert deep.runroot_link == PodmanPaths(deep.root).runroot_link


def test_registries_conf_has_no_search_registries_and_blocks_docker_hub() -> None:
    conf = tomllib.loads(registries_conf())
    assert conf["unqualified-search-registries"] == []
    assert conf["short-name-mode"] == "enforcing"
    blocked = {r["location"] for r in conf["registry"] if r["blocked"]}
    assert {"docker.io", "quay.io"} <= blocked
    assert tomllib.loads(registries_conf(blocked=[])).get("registry") is None


def test_applet_paths_drop_busybox_itself_and_blank_lines() -> None:
    assert applet_paths("bin/sh\n\n/usr/bin/env\nbin/busybox\nlinuxrc\n") == ["bin/sh", "usr/bin/env"]


def test_rootfs_tar_links_every_applet_to_busybox() -> None:
    data = busybox_rootfs_tar(b"\x7fELF-fake", ["bin/sh", "usr/sbin/chroot", "opt/x/tool"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        busybox = tar.extractfile("bin/busybox")
        assert busybox is not None and busybox.read() == b"\x7fELF-fake"
    assert members["bin/busybox"].mode == 0o755
    for applet in ("bin/sh", "usr/sbin/chroot", "opt/x/tool"):
        assert members[applet].issym() and members[applet].linkname == "/bin/busybox"
    assert members["opt/x"].isdir()
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["etc/passwd"].isfile()


def test_service_process_serves_the_stack_socket_with_our_config() -> None:
    cfg = StackConfig(home=Path("/h"))
    comp = PodmanComponent(cfg, {"PATH": "/usr/bin", "CONTAINER_HOST": "ssh://elsewhere"})
    (spec,) = comp.processes()
    assert spec.key.startswith("podman")
    assert spec.argv[1:] == ["system", "service", "--time=0", "unix:///h/podman/podman.sock"]
    assert spec.env["CONTAINERS_CONF"] == "/h/podman/etc/containers.conf"
    assert spec.env["CONTAINERS_STORAGE_CONF"] == "/h/podman/etc/storage.conf"
    assert "CONTAINER_HOST" not in comp.env
    assert comp.ports() == []
    assert BUSYBOX_IMAGE.startswith("localhost/")


def test_bind_specs_need_absolute_paths() -> None:
    assert bind_specs({Path("/a"): "/b", "/c": "/d:ro"}) == ["/a:/b", "/c:/d:ro"]
    with pytest.raises(ValueError):
        bind_specs({"relative": "/b"})
    with pytest.raises(ValueError):
        bind_specs({"/a": "b"})
