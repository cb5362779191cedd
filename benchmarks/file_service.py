"""The pipelines' file service moving one big file up (tus) and down (GET), next to ``cp`` on the same disk.

Run: `.venv/bin/python benchmarks/file_service.py` (``--size-gb G`` sets the file's size, default 2; ``--keep``
leaves the temporary home with the store and the files in place and prints where; ``--dir D`` puts the temporary
home under ``D`` instead of the system's temporary directory). It needs about 3x the size free on that disk.

Where: a fresh ``OPSFLOW_HOME`` in a temporary directory, every port shifted by 27000, only the stack's ``files``
component (:class:`~opsflow.stack.files.FileServiceComponent`, the real uvicorn process over
``<home>/pipelines``). The source file, its ``cp`` copy, the service's store and the downloaded copy all lie in
that home, on one disk. The source is random bytes (one random 64 MiB block repeated, each copy stamped with its
index) and stays in the page cache throughout, so every step reads from memory and writes to the same disk.

tuspy (and the aiohttp it imports) is imported before anything is timed; its import time is printed apart.
The CPU seconds of the service and of this process (the client) during the upload and the download are printed
to show which side bounds the throughput.

1. **Baseline:** ``cp`` of the source to another file in the home (coreutils, as an argv list).
2. **Upload:** :meth:`opsflow.api.files.FilesAPI.upload` (tuspy, 64 MiB PATCH requests) to ``resources/...``.
   The whole call includes the client's SHA-256 of the file (and the tus creation); the progress callback's
   first call, made once the hash is known and the upload exists, splits it into *hashing* and *transfer*.
3. **Download:** :meth:`~opsflow.api.files.FilesAPI.download` of the uploaded file (a listing, then one GET),
   checked afterwards against the upload's SHA-256.

Sync: every step starts after an ``os.sync()`` (so no step pays for an earlier one's dirty pages), and each is
timed twice: the step alone (in the page cache: what the service's CPU costs) and the step plus a ``sync``
right after it (on the disk). Both are printed with their ratio to ``cp`` timed the same way in the same run;
the goal is an upload at >= 0.5x ``cp``. MB are 10^6 bytes.

4. **Memory:** the service's RSS (psutil on its pid, every 20 ms in a thread) during the upload and the
   download; the goal is a peak under 150 MB.
5. **Resume:** the same upload to a second name, run in a child process (``python -c`` with
   ``FilesAPI(...).upload``, 64 MiB chunks), is killed with SIGKILL once the server's partial upload
   (``<root>/.uploads/<id>/data``) reaches half the size (the first size seen past it that is not a multiple of
   the chunk, so that the kill lands inside a PATCH request); then a fresh ``FilesAPI.upload`` of the same file
   in this process, with the same client home (where tuspy keeps the upload's URL). Printed: what the server had,
   the offset the call resumed at (it must be at least that minus one chunk), the call's time until the first
   new bytes land in ``data`` (hashing and the HEAD included) and the rest of the transfer.

The service and the temporary data are removed at the end, whatever happened, unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opsflow.api.files import FilesAPI, Uploaded  # noqa: E402
from opsflow.stack.config import StackConfig  # noqa: E402
from opsflow.stack.env import api_auth_string, child_env  # noqa: E402
from opsflow.stack.files import FileServiceComponent  # noqa: E402
from opsflow.stack.process import running_process  # noqa: E402
from stage_pipeline.uploads import UPLOADS  # noqa: E402

PORT_OFFSET = 27000
CHUNK = 64 << 20
BLOCK = 64 << 20
RSS_GOAL = 150_000_000
UPLOAD_GOAL = 0.5

#: The interrupted upload, as the integration test's client runs it (argv: url, auth, home, source, dest, chunk).
CLIENT = """
import sys
from pathlib import Path
from opsflow.api.files import FilesAPI
FilesAPI(sys.argv[1], sys.argv[2], Path(sys.argv[3])).upload(sys.argv[4], sys.argv[5], chunk=int(sys.argv[6]))
"""


def make_file(path: Path, size: int) -> None:
    """``size`` random-looking bytes: one random block, each copy stamped with its index (no two blocks equal)."""
    block = bytearray(os.urandom(BLOCK))
    with open(path, "wb") as f:
        left, index = size, 0
        while left:
            block[:8] = index.to_bytes(8, "little")
            n = min(left, BLOCK)
            f.write(block[:n] if n < BLOCK else block)
            left -= n
            index += 1
        os.fsync(f.fileno())


def timed(step: Callable[[], object]) -> tuple[float, float]:
    """Seconds of ``step`` alone and of ``step`` plus a ``sync`` (after a sync, so it starts clean)."""
    os.sync()
    started = time.perf_counter()
    step()
    alone = time.perf_counter() - started
    os.sync()
    return alone, time.perf_counter() - started


class PeakRss:
    """The peak RSS of one process, sampled every ``every_s`` in a thread while the ``with`` block runs."""

    def __init__(self, pid: int, every_s: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.process.memory_info().rss)


class CpuUse:
    """CPU seconds (user + system) of the service and of this process (the client) while the block runs."""

    def __init__(self, pid: int) -> None:
        self.server, self.client = psutil.Process(pid), psutil.Process()
        self.server_s = self.client_s = 0.0

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    def __enter__(self) -> CpuUse:
        self._start = (self._cpu(self.server), self._cpu(self.client))
        return self

    def __exit__(self, *exc: object) -> None:
        self.server_s = self._cpu(self.server) - self._start[0]
        self.client_s = self._cpu(self.client) - self._start[1]


def partial_uploads(root: Path) -> list[Path]:
    """The ``data`` files of the uploads in progress."""
    updir = root / UPLOADS
    return [p / "data" for p in updir.iterdir() if (p / "data").is_file()] if updir.is_dir() else []


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def rate(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def remove_tree(path: Path) -> None:
    """``rm -rf`` of a home whose store has sealed (0444/0555) entries."""

    def writable(func: Callable[[str], object], name: str, _: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(Path(name).parent, 0o755)
        with contextlib.suppress(FileNotFoundError):
            func(name)

    shutil.rmtree(path, onerror=writable)


def unseal_remove(path: Path) -> None:
    """Remove an uploaded (sealed) file: its directory is 0555 as the service leaves it."""
    mode = path.parent.stat().st_mode
    path.parent.chmod(0o755)
    path.unlink()
    path.parent.chmod(mode)


def resume_part(cfg: StackConfig, source: Path, size: int, pid: int) -> list[str]:
    """Kill an upload at half its size, then resume it; lines of the report."""
    root = cfg.home / "pipelines"
    client_home = cfg.home / "resume-client"
    dest = "resources/bench/resumed.bin"
    url, auth = cfg.files_url, api_auth_string(cfg)
    argv = [sys.executable, "-c", CLIENT, url, auth, str(client_home), str(source), dest]
    child = subprocess.Popen([*argv, str(CHUNK)], cwd=ROOT, stderr=subprocess.PIPE)
    data: Path | None = None
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"the uploading client exited first ({child.returncode})")
            found = partial_uploads(root)
            reached = size_of(found[0]) if found else -1
            if reached >= size // 2 and reached % CHUNK:  # inside a PATCH, not just after one
                data = found[0]
                break
            time.sleep(0.005)
        else:
            raise RuntimeError("the interrupted upload never reached half its size")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    at_kill = size_of(data)
    # The server notices the broken connection and writes what it had buffered: wait until the size settles.
    kept, still_since = at_kill, time.monotonic()
    while time.monotonic() - still_since < 0.5:
        time.sleep(0.02)
        now = size_of(data)
        if now != kept:
            kept, still_since = now, time.monotonic()

    landed: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not landed:
            if size_of(data) > kept or not data.exists():
                landed.append(time.perf_counter())
            time.sleep(0.002)

    marks: list[float] = []
    watcher = threading.Thread(target=watch, daemon=True)
    os.sync()
    with PeakRss(pid) as rss:
        watcher.start()
        started = time.perf_counter()
        done = FilesAPI(url, auth, client_home).upload(
            source, dest, progress=lambda *_: marks.append(time.perf_counter()), chunk=CHUNK
        )
        ended = time.perf_counter()
        stop.set()
        watcher.join()
    ready_s = marks[0] - started
    first_s = (landed[0] if landed else ended) - started
    rest = size - done.resumed_at
    ok = done.resumed_at >= kept - CHUNK and done.resumed_at > 0 and size_of(root / dest) == size
    return [
        "resume after SIGKILL of the uploading client at 50 % (64 MiB chunks), in a fresh FilesAPI.upload:",
        f"  the server had {kept:,} bytes ({kept / size:.1%}; {at_kill:,} when killed), resumed at "
        f"{done.resumed_at:,} ({'>=' if done.resumed_at >= kept - CHUNK else 'LESS than'} kept - one chunk; "
        f"{'=' if done.resumed_at == kept else '!='} kept)",
        f"  first new bytes on the server {first_s:6.2f} s after the call  (of which the client's SHA-256 of the "
        f"file + tus HEAD: {ready_s:.2f} s)",
        f"  the rest, {rest / 1e6:,.0f} MB, in {ended - marks[0]:6.2f} s ({rate(rest, ended - marks[0]):5.0f} MB/s);"
        f" whole call {ended - started:.2f} s; server peak RSS {rss.peak / 1e6:.0f} MB",
        f"  the file complete with the right SHA-256: {'yes' if ok and done.sha256 else 'NO'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="the file's size in GiB (default 2)")
    parser.add_argument("--keep", action="store_true", help="leave the temporary home (store and files) in place")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary home goes (default: $TMPDIR)")
    args = parser.parse_args()
    size = int(args.size_gb * (1 << 30))
    base = args.dir or Path(tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < 3.2 * size:
        raise SystemExit(f"{base} has {free / 1e9:.1f} GB free; {3.2 * size / 1e9:.1f} GB are needed")

    load_before = os.getloadavg()[0]
    home = Path(tempfile.mkdtemp(prefix="opsflow-bench-files-", dir=base))
    cfg = StackConfig(home=home).shifted(PORT_OFFSET)
    component = FileServiceComponent(cfg, child_env(cfg))
    try:
        local = home / "local"
        local.mkdir()
        source, copy, down = local / "source.bin", local / "cp-copy.bin", local / "downloaded.bin"
        made = time.perf_counter()
        make_file(source, size)
        made_s = time.perf_counter() - made
        component.start()
        proc = running_process(cfg.home, "file-service")
        if proc is None:
            raise RuntimeError("the file service is not running")
        pid = proc.pid
        api = FilesAPI(cfg.files_url, api_auth_string(cfg), home / "client")
        root = home / "pipelines"
        dest = "resources/bench/source.bin"

        imported = time.perf_counter()
        import tusclient.client  # noqa: F401  (once per process: FilesAPI.upload imports it, and aiohttp with it)

        import_s = time.perf_counter() - imported
        cp = timed(lambda: subprocess.run(["cp", str(source), str(copy)], check=True))
        copy.unlink()

        marks: list[float] = []  # the call's start, then each progress call (the first: hash known, upload made)
        uploaded: list[Uploaded] = []

        def progress(done: int, total: int) -> None:
            marks.append(time.perf_counter())

        def upload() -> None:
            marks.append(time.perf_counter())
            uploaded.append(api.upload(source, dest, progress=progress, chunk=CHUNK))

        with PeakRss(pid) as up_rss, CpuUse(pid) as up_cpu:
            up = timed(upload)
        hash_s = marks[1] - marks[0]
        if size_of(root / dest) != size:
            raise RuntimeError("the upload did not arrive whole")

        with PeakRss(pid) as down_rss, CpuUse(pid) as down_cpu:
            dn = timed(lambda: api.download(dest, down))
        same = file_sha256(down) == uploaded[0].sha256
        down.unlink()

        unseal_remove(root / dest)
        resumed = resume_part(cfg, source, size, pid)

        transfer = (up[0] - hash_s, up[1] - hash_s)
        rows = [
            ("cp (baseline)", cp),
            ("upload, whole call", up),
            ("upload, transfer alone", transfer),
            ("download", dn),
        ]
        print(
            f"file service vs cp: {size / 1e6:,.0f} MB ({args.size_gb:g} GiB, made in {made_s:.1f} s), all in "
            f"{home} (one disk); 2 cores, client and server on the same machine"
        )
        print(f"  {'':<26}{'alone (page cache)':>30}{'+ sync (on disk)':>30}")
        print(f"  {'':<26}{'s':>8}{'MB/s':>8}{'vs cp':>10}    {'s':>8}{'MB/s':>8}{'vs cp':>10}")
        for label, (alone, synced) in rows:
            print(
                f"  {label:<26}{alone:8.2f}{rate(size, alone):8.0f}{cp[0] / alone:9.2f}x    "
                f"{synced:8.2f}{rate(size, synced):8.0f}{cp[1] / synced:9.2f}x"
            )
        print(
            f"  the upload's hashing part (client SHA-256 + tus creation): {hash_s:.2f} s; importing tuspy (done "
            f"beforehand, paid once per process): {import_s:.2f} s"
        )
        for label, cpu, wall in (("upload", up_cpu, up[1]), ("download", down_cpu, dn[1])):
            print(
                f"  CPU during the {label} (+ sync, {wall:.2f} s): server {cpu.server_s:.2f} s "
                f"({cpu.server_s / wall:.0%} of one core), client {cpu.client_s:.2f} s ({cpu.client_s / wall:.0%})"
            )
        print(f"  downloaded file has the uploaded SHA-256: {'yes' if same else 'NO'}")
        goal = cp[0] / up[0] >= UPLOAD_GOAL and cp[1] / up[1] >= UPLOAD_GOAL
        print(
            f"  goal upload >= {UPLOAD_GOAL}x cp (whole call): {'met' if goal else 'NOT met'} "
            f"({cp[0] / up[0]:.2f}x alone, {cp[1] / up[1]:.2f}x with sync)"
        )
        peak = max(up_rss.peak, down_rss.peak)
        print(
            f"server RSS: {up_rss.start / 1e6:.0f} MB before; peak {up_rss.peak / 1e6:.0f} MB during the upload, "
            f"{down_rss.peak / 1e6:.0f} MB during the download; goal < 150 MB: "
            f"{'met' if peak < RSS_GOAL else 'NOT met'}"
        )
        for line in resumed:
            print(line)
        load_after = os.getloadavg()[0]
        print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after (the 2 cores are shared)")
    finally:
        component.stop()
        if args.keep:
            print(f"kept: {home}")
        else:
            remove_tree(home)


if __name__ == "__main__":
    main()
