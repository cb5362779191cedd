"""Docker-compatible engine of the local stack: rootful podman serving the Docker API on ``<home>/podman/podman.sock``.

Everything podman keeps (images, containers, locks, events, network configs) lives under ``<home>/podman``, its
runtime state named through a short symlink ``/run/opsflow/podman-<hash>`` (see :data:`RUNROOT_LINK_DIR`). The
generated ``containers.conf``, ``storage.conf`` and ``registries.conf`` are given to every podman call through
``CONTAINERS_CONF`` and friends (:meth:`PodmanComponent.podman_env`), so the API service and the CLI calls of
this module share one store. No registry is reachable, so the one image, :data:`BUSYBOX_IMAGE`, is made locally
from Debian's busybox-static and ``podman import``-ed; pulls from the usual public registries are blocked.
Docker Swarm does not exist on podman.

Example:
    >>> paths = PodmanPaths(Path("/h/podman"))
    >>> 'runtime = "runc"' in containers_conf(paths)
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from opsflow.files import atomic_write_text
from opsflow.stack.base import Component, StackError
from opsflow.stack.config import StackConfig
from opsflow.stack.process import STACK_ID_VAR, ProcessSpec, kill_all, running_process

#: The image every Docker code path of the local stack runs (made by :meth:`PodmanComponent.after_start`).
BUSYBOX_IMAGE = "localhost/opsflow-busybox:latest"
#: Debian's busybox-static: one static binary, so a rootfs needs nothing else.
BUSYBOX_BINARY = Path("/bin/busybox")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: vfs copies an image per container (ours is 2 MB) but, unlike overlay, leaves no mounts behind: a stopped
#: home is plain files, removable with ``rm -rf``, and it works on any backing filesystem.
STORAGE_DRIVER = "vfs"
#: Docker clients name short images as docker.io/library/...; blocking the public registries makes a pull
#: fail at once with "registry ... is blocked" instead of waiting on a network that is not there.
BLOCKED_REGISTRIES = (
    "docker.io",
    "quay.io",
    "ghcr.io",
    "gcr.io",
    "registry.k8s.io",
    "registry.fedoraproject.org",
    "registry.access.redhat.com",
    "registry.suse.com",
    "registry.opensuse.org",
    "container-registry.oracle.com",
)
#: Variables that would turn the podman CLI into a remote client of some other engine.
REMOTE_VARS = ("CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINER_SSHKEY", "CONTAINER_PASSPHRASE")
#: podman passes the runroot to each container's exit command (``podman container cleanup``) as ``--runroot``,
#: which refuses more than 50 characters: with a longer one every container's clean-up fails and each wait
#: takes 20 s more. So the runroot is named by a short symlink here, root-only like /run itself.
RUNROOT_LINK_DIR = Path("/run/opsflow")
MAX_RUNROOT = 50
#: runc's default state directory when run as root (podman gives it no --root).
RUNC_STATE_DIR = Path("/run/runc")
#: The kernel's limit on a unix socket path (sun_path is 108 bytes, NUL included).
MAX_SOCKET_PATH = 107
#: /etc/passwd and /etc/group of the image, so that `id`, `ls -l` and `--user nobody` resolve names.
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


@dataclass(frozen=True)
class PodmanPaths:
    """Where podman's files go under ``root`` (``<home>/podman``)."""

    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def graphroot(self) -> Path:
        """Images and containers; podman's database (its default static_dir) is ``graphroot/libpod``."""
        return self.root / "storage"

    @property
    def run(self) -> Path:
        """State podman expects on a tmpfs (wiped at boot): runroot, tmp_dir, locks, events."""
        return self.root / "run"

    @property
    def runroot_link(self) -> Path:
        """A short symlink to :attr:`run`, one per root (see :data:`RUNROOT_LINK_DIR`)."""
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return RUNROOT_LINK_DIR / f"podman-{digest}"

    @property
    def runroot(self) -> Path:
        """c/storage's runroot, named through :attr:`runroot_link` (at most 50 characters, whatever the home)."""
        return self.runroot_link / "storage"

    @property
    def tmp_dir(self) -> Path:
        return self.run / "libpod"

    @property
    def tmp(self) -> Path:
        """TMPDIR and image_copy_tmp_dir (must exist: podman does not create it)."""
        return self.root / "tmp"

    @property
    def networks(self) -> Path:
        return self.root / "networks"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def containers_conf(self) -> Path:
        return self.etc / "containers.conf"

    @property
    def storage_conf(self) -> Path:
        return self.etc / "storage.conf"

    @property
    def registries_conf(self) -> Path:
        return self.etc / "registries.conf"


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escaping is a subset of TOML's).

    >>> _toml('a"b')
    '"a\\\\"b"'
    """
    return json.dumps(value)


def containers_conf(paths: PodmanPaths) -> str:
    """containers.conf: runc and cgroupfs (what works on this cgroup layout), every path under ``paths.root``."""
    return f"""# Generated by opsflow; rewritten on every start.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
# The CLI's default; the Docker API picks its network per request (the adapter asks for host).
netns = "host"

[network]
network_config_dir = {_toml(str(paths.networks))}

[engine]
# crun fails on this host's cgroup layout; runc works.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
# File locks under tmp_dir instead of the one shared memory segment /dev/shm/libpod_lock, which every rootful
# podman on the machine shares: a second stack's state refresh would free this one's locks.
lock_type = "file"
tmp_dir = {_toml(str(paths.tmp_dir))}
image_copy_tmp_dir = {_toml(str(paths.tmp))}
# static_dir is left at its default (graphroot/libpod): moving it costs a 20 s wait per container here.
"""


def storage_conf(paths: PodmanPaths, driver: str = STORAGE_DRIVER) -> str:
    """storage.conf: images and containers under ``paths.graphroot``, runtime state under ``paths.runroot``."""
    return f"""# Generated by opsflow; rewritten on every start.
[storage]
driver = {_toml(driver)}
graphroot = {_toml(str(paths.graphroot))}
runroot = {_toml(str(paths.runroot))}
"""


def registries_conf(blocked: Iterable[str] = BLOCKED_REGISTRIES) -> str:
    """registries.conf: no search registries for short names, and ``blocked`` registries refused outright."""
    lines = [
        "# Generated by opsflow: no registry is reachable from the local stack; images are made locally.",
        "unqualified-search-registries = []",
        'short-name-mode = "enforcing"',
    ]
    for location in blocked:
        lines += ["", "[[registry]]", f"location = {_toml(location)}", "blocked = true"]
    return "\n".join(lines) + "\n"


def applet_paths(list_full: str) -> list[str]:
    """The applet paths of ``busybox --list-full`` output, relative, without busybox itself and ``linuxrc``.

    >>> applet_paths("bin/sh\\nusr/bin/env\\nlinuxrc\\nbin/busybox\\n")
    ['bin/sh', 'usr/bin/env']
    """
    skip = {"bin/busybox", "linuxrc"}
    return [p.strip().lstrip("/") for p in list_full.splitlines() if p.strip() and p.strip().lstrip("/") not in skip]


def busybox_rootfs_tar(busybox: bytes, applets: Sequence[str]) -> bytes:
    """An uncompressed tar of a minimal root filesystem: ``bin/busybox`` and a symlink to it per applet."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "run", "var"}
        dirs |= {str(parent) for a in applets for parent in Path(a).parents if str(parent) != "."}
        for name in sorted(dirs):
            add(name, tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox)
        for applet in applets:
            add(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, PASSWD.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, GROUP.encode())
    return buf.getvalue()


class PodmanComponent(Component):
    """``podman system service`` on ``cfg.docker_socket``, with :data:`BUSYBOX_IMAGE` built on first start."""

    name = "podman"

    def __init__(self, cfg: StackConfig, env: Mapping[str, str]) -> None:
        # A caller's CONTAINER_HOST would make `podman system service` a remote client (which cannot serve).
        super().__init__(cfg, {k: v for k, v in env.items() if k not in REMOTE_VARS})
        self.paths = PodmanPaths(cfg.home / "podman")

    # --- podman itself -----------------------------------------------------------------------------------
    def podman_env(self) -> dict[str, str]:
        """The variables that point podman at this stack's configuration (service and CLI alike)."""
        return {
            "CONTAINERS_CONF": str(self.paths.containers_conf),
            "CONTAINERS_STORAGE_CONF": str(self.paths.storage_conf),
            "CONTAINERS_REGISTRIES_CONF": str(self.paths.registries_conf),
            "TMPDIR": str(self.paths.tmp),
        }

    def podman(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run the podman CLI on this stack's store (not checked: callers look at ``returncode``)."""
        self._link_runroot()
        exe = shutil.which("podman") or "podman"
        env = {**self.env, **self.podman_env(), STACK_ID_VAR: str(self.cfg.home)}
        return subprocess.run(
            [exe, *args], env=env, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )

    # --- component ---------------------------------------------------------------------------------------
    def processes(self) -> list[ProcessSpec]:
        argv = [shutil.which("podman") or "podman", "system", "service", "--time=0", self.cfg.docker_host]
        return [ProcessSpec(key="podman-service", argv=argv, env=self.podman_env(), cwd=self.paths.root)]

    def ports(self) -> list[int]:
        return []

    def enabled(self) -> tuple[bool, str]:
        if os.geteuid() != 0:
            return False, "the local stack runs podman as root (rootless needs subuids and another network set-up)"
        for tool, package in (("podman", "podman"), ("runc", "runc"), ("conmon", "conmon")):
            if shutil.which(tool) is None:
                return False, f"no `{tool}` on PATH (install Debian's {package})"
        if not BUSYBOX_BINARY.exists():
            return False, f"no {BUSYBOX_BINARY} (install Debian's busybox-static)"
        return True, ""

    def prepare(self) -> None:
        socket = str(self.cfg.docker_socket)
        if len(socket) > MAX_SOCKET_PATH:
            raise StackError(f"podman: socket path {socket} is longer than {MAX_SOCKET_PATH} characters")
        self._reset_stale_run_state()
        p = self.paths
        for d in (p.etc, p.graphroot, p.run, p.tmp, p.networks):
            d.mkdir(parents=True, exist_ok=True)
        self._link_runroot()
        atomic_write_text(p.containers_conf, containers_conf(p))
        atomic_write_text(p.storage_conf, storage_conf(p))
        atomic_write_text(p.registries_conf, registries_conf())

    def _link_runroot(self) -> None:
        """Point :attr:`PodmanPaths.runroot_link` at ``run/`` (atomically; whatever was there is replaced)."""
        link, target = self.paths.runroot_link, self.paths.run
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        target.mkdir(parents=True, exist_ok=True)
        try:
            link.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            tmp = link.with_name(f".{link.name}.{os.getpid()}")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)
        except OSError as exc:
            raise StackError(f"podman: cannot link {link} -> {target} (podman runs as root here): {exc}") from exc

    def _reset_stale_run_state(self) -> None:
        """Forget runtime state nothing runs for any more, as a reboot would (podman then refreshes its state).

        podman expects ``run/`` on a tmpfs; under home it outlives a crash or reboot and would describe containers
        whose processes are gone.
        """
        if running_process(self.cfg.home, "podman-service") is not None or self._conmons():
            return
        # runc keeps its own state in /run/runc/<id>, which podman's refresh does not clean; --force also ends a
        # container process whose conmon died with it.
        runc = shutil.which("runc")
        for userdata in self.paths.graphroot.glob(f"{STORAGE_DRIVER}-containers/*/userdata"):
            cid = userdata.parent.name
            if runc and RUNC_STATE_DIR.joinpath(cid).exists():
                subprocess.run([runc, "delete", "--force", cid], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.paths.run, ignore_errors=True)

    def after_start(self) -> None:
        """Build :data:`BUSYBOX_IMAGE` unless it exists."""
        if self.podman("image", "exists", BUSYBOX_IMAGE).returncode == 0:
            return
        listing = subprocess.run(
            [str(BUSYBOX_BINARY), "--list-full"], capture_output=True, text=True, check=True, timeout=30
        )
        tar = self.paths.build / "rootfs.tar"
        tar.parent.mkdir(parents=True, exist_ok=True)
        tar.write_bytes(busybox_rootfs_tar(BUSYBOX_BINARY.read_bytes(), applet_paths(listing.stdout)))
        try:
            done = self.podman(
                "import",
                "--change", 'CMD ["/bin/sh"]',
                "--change", f"ENV PATH={IMAGE_PATH}",
                "--change", "WORKDIR /",
                "--message", "opsflow: busybox-static rootfs",
                str(tar), BUSYBOX_IMAGE,
            )  # fmt: skip
        finally:
            tar.unlink(missing_ok=True)
        if done.returncode != 0:
            raise StackError(f"podman: could not import {BUSYBOX_IMAGE}: {done.stderr.strip()}")

    def stop(self) -> bool:
        """Remove every container first (their conmon monitors leave the service's process group and do not
        carry the stack id), then stop the service, then end any conmon of this home that is still there.

        Images stay: the next start finds :data:`BUSYBOX_IMAGE` and builds nothing.
        """
        removed = False
        if self.paths.graphroot.joinpath("libpod").exists() and shutil.which("podman"):
            with contextlib.suppress(subprocess.TimeoutExpired, StackError):
                done = self.podman("rm", "--all", "--force", "--time", "0", timeout_s=60)
                removed = done.returncode == 0 and bool(done.stdout.strip())
        stopped = super().stop()
        leftovers = self._conmons()
        if leftovers:
            with contextlib.suppress(psutil.Error):
                leftovers += [c for p in list(leftovers) for c in p.children(recursive=True)]
            kill_all(leftovers)
        # Made again by the next start or CLI call; gone, a removed home leaves no dangling link.
        if self.paths.runroot_link.is_symlink():
            self.paths.runroot_link.unlink(missing_ok=True)
        return stopped or removed or bool(leftovers)

    def _conmons(self) -> list[psutil.Process]:
        """conmon processes monitoring containers of this home (recognised by the paths on their command line)."""
        marker = f"{self.paths.root}/"
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmdline = proc.info["cmdline"] or []
                ours = proc.info["name"] == "conmon" and any(marker in arg for arg in cmdline)
                if ours and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        return found

    # --- probes ------------------------------------------------------------------------------------------
    def _get(self, path: str) -> httpx.Response:
        transport = httpx.HTTPTransport(uds=str(self.cfg.docker_socket))
        with httpx.Client(transport=transport, base_url="http://podman", timeout=2.0) as client:
            return client.get(path)

    def healthy(self) -> bool:
        try:
            return self._get("/_ping").text == "OK"
        except httpx.HTTPError:
            return False

    def url(self) -> str | None:
        return self.cfg.docker_host

    def detail(self) -> str:
        try:
            version = self._get("/version").json().get("Version", "?")
            running = len(self._get("/containers/json").json())
            image = self._get(f"/images/{BUSYBOX_IMAGE}/json").status_code == 200
        except (httpx.HTTPError, ValueError) as exc:
            return f"API error: {exc}"
        return f"podman {version}, {running} running, {BUSYBOX_IMAGE} {'present' if image else 'MISSING'}"
