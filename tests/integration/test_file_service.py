"""The pipelines' file service as the stack runs it (a uvicorn process), driven by tuspy and raw HTTP.

Issue 12: a resumable upload survives ``kill -9`` of its client and ends with the same SHA-256; a partial upload
never shows at its destination; escapes (``..``, absolute, NUL and control characters, symlinks out of the root)
and writes to sealed stage outputs are refused with a 4xx and write nothing; Range downloads; a directory as a
tar stream; a full disk keeps the partial upload; the server's RSS stays under 150 MB while a GB goes up and down.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from opsflow.api.files import FilesAPI
from opsflow.errors import InputError
from opsflow.stack.config import StackConfig
from opsflow.stack.env import api_auth_string, child_env
from opsflow.stack.files import FileServiceComponent
from opsflow.stack.process import running_process
from stage_pipeline.file_links import signed_link
from stage_pipeline.file_rules import CHECKSUM_MISMATCH, encode_metadata
from stage_pipeline.uploads import UPLOADS
from tests.support import unavailable, wait_until

PORT_OFFSET = 21000
TUS = {"Tus-Resumable": "1.0.0"}


class Service:
    def __init__(self, cfg: StackConfig, component: FileServiceComponent) -> None:
        self.cfg, self.component = cfg, component
        self.root = cfg.home / "pipelines"
        self.url = cfg.files_url
        self.auth = api_auth_string(cfg)
        user, _, password = self.auth.partition(":")
        self.basic = (user, password)

    def api(self, home: Path) -> FilesAPI:
        return FilesAPI(self.url, self.auth, home)

    def pid(self) -> int:
        proc = running_process(self.cfg.home, "file-service")
        assert proc is not None
        return proc.pid

    def create(self, path: str, length: int, **meta: str) -> httpx.Response:
        headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": encode_metadata({"path": path, **meta})}
        return httpx.post(f"{self.url}/uploads", headers=headers, auth=self.basic)

    def patch(self, location: str, offset: int, body: bytes, **headers: str) -> httpx.Response:
        h = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **headers}
        return httpx.patch(location, content=body, headers=h, auth=self.basic)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    cfg = StackConfig(home=tmp_path_factory.mktemp("files")).shifted(PORT_OFFSET)
    component = FileServiceComponent(cfg, child_env(cfg))
    try:
        component.start()
    except Exception as exc:
        component.stop()
        unavailable(f"the file service did not start: {exc}")
    svc = Service(cfg, component)
    (svc.root / "projects" / "traffic" / "stages" / "detect" / "1").mkdir(parents=True)
    (svc.root / "projects" / "traffic" / "project.json").write_text("{}")
    (svc.root / "projects" / "traffic" / "stages" / "detect" / "1" / "counts.png").write_bytes(b"\x89PNG" + b"x" * 100)
    (svc.root / "resources").mkdir(exist_ok=True)
    (svc.root / "resources" / "taken.bin").write_bytes(b"first")
    yield svc
    component.stop()


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def uploads_in_progress(svc: Service) -> list[Path]:
    return [p for p in (svc.root / UPLOADS).iterdir() if p.is_dir()] if (svc.root / UPLOADS).is_dir() else []


# --- the round trip with a standard tus client ---------------------------------------------------------------


def test_tuspy_upload_then_range_download_listing_and_archive(service: Service, tmp_path: Path) -> None:
    source = tmp_path / "clip.bin"
    sha = random_file(source, 5_000_000)
    api = service.api(tmp_path / "home")
    done = api.upload(source, "resources/videos/", chunk=1 << 20)
    assert (done.path, done.size, done.sha256, done.resumed_at) == ("resources/videos/clip.bin", 5_000_000, sha, 0)
    stored = service.root / "resources" / "videos" / "clip.bin"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha
    assert not os.stat(stored).st_mode & 0o222, "an uploaded input is sealed read-only"
    assert uploads_in_progress(service) == []

    [entry] = api.ls("resources/videos")
    assert (entry.path, entry.size, entry.sha256, entry.read_only) == (
        "resources/videos/clip.bin",
        5_000_000,
        sha,
        True,
    )

    r = httpx.get(api.url("resources/videos/clip.bin"), headers={"Range": "bytes=1000-1999"}, auth=service.basic)
    assert r.status_code == 206 and r.headers["content-range"] == "bytes 1000-1999/5000000"
    assert r.content == stored.read_bytes()[1000:2000]

    # An interrupted download resumes from its .part file.
    part = tmp_path / "out" / "clip.bin.part"
    part.parent.mkdir()
    part.write_bytes(stored.read_bytes()[:1_234_567])
    got = api.download("resources/videos/clip.bin", tmp_path / "out")
    assert got == tmp_path / "out" / "clip.bin" and not part.exists()
    assert hashlib.sha256(got.read_bytes()).hexdigest() == sha

    tree = api.download("projects/traffic/stages", tmp_path / "tree")
    assert (tree / "detect" / "1" / "counts.png").read_bytes() == b"\x89PNG" + b"x" * 100
    r = httpx.get(f"{service.url}/archive/projects/traffic", auth=service.basic)
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = tar.getnames()
    assert "traffic/stages/detect/1/counts.png" in names and "traffic/project.json" in names


def test_tuspy_with_per_chunk_checksums(service: Service, tmp_path: Path) -> None:
    from tusclient.client import TusClient

    source = tmp_path / "ref.json"
    source.write_bytes(b'{"points": [1, 2, 3]}' * 50_000)
    basic = "Basic " + base64.b64encode(service.auth.encode()).decode()
    client = TusClient(f"{service.url}/uploads", headers={"Authorization": basic})
    meta = {"path": "projects/traffic/input/ref.json"}
    uploader = client.uploader(file_path=str(source), chunk_size=100_000, upload_checksum=True, metadata=meta)
    uploader.upload()
    assert (service.root / "projects" / "traffic" / "input" / "ref.json").read_bytes() == source.read_bytes()


# --- resuming --------------------------------------------------------------------------------------------------

CLIENT = """
import sys
from pathlib import Path
from opsflow.api.files import FilesAPI
FilesAPI(sys.argv[1], sys.argv[2], Path(sys.argv[3])).upload(sys.argv[4], sys.argv[5], chunk=4 << 20)
"""


def test_upload_resumes_after_kill_9_of_the_client(service: Service, tmp_path: Path) -> None:
    source = tmp_path / "traffic.mp4"
    size = 200_000_000
    sha = random_file(source, size)
    home = tmp_path / "home"
    dest = "resources/videos/traffic.mp4"
    argv = [sys.executable, "-c", CLIENT, service.url, service.auth, str(home), str(source), dest]
    client = subprocess.Popen(argv, stderr=subprocess.PIPE)

    def partial() -> int:
        for up in uploads_in_progress(service):
            size_now = (up / "data").stat().st_size
            if size_now > 20_000_000:
                return size_now
        return 0

    assert wait_until(partial, timeout_s=120, every_s=0.05), "the upload never got going"
    client.send_signal(signal.SIGKILL)
    client.wait()
    assert not (service.root / dest).exists(), "a partial upload appeared at its destination"
    [pending] = uploads_in_progress(service)
    kept = (pending / "data").stat().st_size
    assert 0 < kept < size

    done = service.api(home).upload(source, dest)
    assert done.resumed_at >= kept - (4 << 20) and done.resumed_at > 0, (done, kept)
    assert done.sha256 == sha
    with open(service.root / dest, "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == sha
    assert uploads_in_progress(service) == []


def test_head_reports_the_offset_a_broken_request_reached(service: Service) -> None:
    r = service.create("resources/broken.bin", 3_000_000)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert service.patch(location, 0, b"a" * 1_000_000).headers["upload-offset"] == "1000000"
    assert service.patch(location, 0, b"b" * 10).status_code == 409  # not the upload's offset
    head = httpx.head(location, headers=TUS, auth=service.basic)
    assert (head.status_code, head.headers["upload-offset"], head.headers["upload-length"]) == (
        200,
        "1000000",
        "3000000",
    )
    assert httpx.delete(location, headers=TUS, auth=service.basic).status_code == 204
    assert httpx.head(location, headers=TUS, auth=service.basic).status_code == 404


# --- checksums ---------------------------------------------------------------------------------------------------


def test_a_wrong_sha256_drops_the_upload_and_writes_nothing(service: Service) -> None:
    body = b"not the announced content"
    r = service.create("resources/wrong.bin", len(body), sha256=hashlib.sha256(b"other").hexdigest())
    r = service.patch(r.headers["location"], 0, body)
    assert r.status_code == CHECKSUM_MISMATCH and "SHA-256" in r.json()["error"]
    assert not (service.root / "resources" / "wrong.bin").exists()


def test_a_chunk_with_a_wrong_checksum_is_cut_off(service: Service) -> None:
    r = service.create("resources/chunks.bin", 20)
    location = r.headers["location"]
    good = base64.b64encode(hashlib.sha1(b"0123456789").digest()).decode()
    assert service.patch(location, 0, b"0123456789", **{"Upload-Checksum": f"sha1 {good}"}).status_code == 204
    r = service.patch(location, 10, b"XXXXXXXXXX", **{"Upload-Checksum": f"sha1 {good}"})
    assert r.status_code == CHECKSUM_MISMATCH
    assert httpx.head(location, headers=TUS, auth=service.basic).headers["upload-offset"] == "10"


# --- authentication and links ------------------------------------------------------------------------------------


def test_without_or_with_a_wrong_token_401(service: Service) -> None:
    url = f"{service.url}/files/projects/traffic/stages/detect/1/counts.png"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=(service.basic[0], "wrong")).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {service.basic[1]}"}).status_code == 200
    r = httpx.post(f"{service.url}/uploads", headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")


def test_a_signed_link_grants_one_file_until_it_expires(service: Service) -> None:
    path = "projects/traffic/stages/detect/1/counts.png"
    link = signed_link(service.url, service.auth, path)
    assert httpx.get(link).content.startswith(b"\x89PNG")
    assert httpx.get(link.replace("sig=", "sig=0")).status_code == 401
    other = link.replace("/files/projects/traffic/stages/detect/1/counts.png", "/files/projects/traffic/project.json")
    assert httpx.get(other).status_code == 401
    expired = signed_link(service.url, service.auth, path, expires=int(time.time()) - 1)
    assert httpx.get(expired).status_code == 401


# --- safety --------------------------------------------------------------------------------------------------------

ESCAPES = [
    "/files/%2e%2e/%2e%2e/etc/passwd",
    "/files/resources/%2e%2e/%2e%2e/etc/passwd",
    "/files//etc/passwd",
    "/files/resources/a%00b",
    "/files/resources/a%0ab",
    "/files/.uploads/hashes.json",
    "/list/resources/%2e%2e",
    "/archive/%2e%2e",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_escapes_are_refused(service: Service, path: str) -> None:
    r = httpx.get(f"{service.url}{path}", auth=service.basic)
    assert r.status_code == 400, (path, r.status_code, r.text)
    assert "path" in r.json()["error"]


def test_a_symlink_out_of_the_root_is_refused(service: Service, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret")
    link = service.root / "projects" / "traffic" / "stages" / "detect" / "1" / "leak"
    link.symlink_to(tmp_path / "secret")
    try:
        r = httpx.get(f"{service.url}/files/projects/traffic/stages/detect/1/leak", auth=service.basic)
        assert r.status_code == 400 and "leaves the store" in r.json()["error"]
        tar = httpx.get(f"{service.url}/archive/projects/traffic/stages", auth=service.basic).content
        assert b"s3cret" not in tar  # archived as the link it is, never followed
    finally:
        link.unlink()


@pytest.mark.parametrize(
    ("dest", "status"),
    [
        ("projects/traffic/stages/detect/1/counts.png", 403),  # a sealed stage output
        ("projects/traffic/stages/detect/2/new.png", 403),
        ("projects/traffic/project.json", 403),
        ("projects/nosuch/input/a.mp4", 404),
        ("resources/../projects/traffic/project.json", 400),
        ("/etc/cron.d/x", 400),
        ("resources/a\nb", 400),
        ("resources/taken.bin", 409),  # exists: never overwritten
    ],
)
def test_refused_destinations_write_nothing(service: Service, tmp_path: Path, dest: str, status: int) -> None:
    before = sorted(p for p in service.root.rglob("*") if UPLOADS not in p.parts)
    pending = uploads_in_progress(service)
    r = service.create(dest, 10)
    assert r.status_code == status, (dest, r.status_code, r.text)
    assert sorted(p for p in service.root.rglob("*") if UPLOADS not in p.parts) == before
    assert uploads_in_progress(service) == pending


def test_the_cli_names_a_refused_destination(service: Service, tmp_path: Path) -> None:
    source = tmp_path / "x.bin"
    source.write_bytes(b"x")
    with pytest.raises(InputError, match="read-only"):
        service.api(tmp_path).upload(source, "projects/traffic/stages/detect/1/x.bin")


# --- a full disk -------------------------------------------------------------------------------------------------


def test_a_full_disk_keeps_the_partial_upload_for_resuming(tmp_path: Path) -> None:
    """The store on a 16 MB tmpfs: a 30 MB upload stops with 507 and its bytes; freed space lets it finish."""
    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs needs root")
    root = tmp_path / "small"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        cfg = StackConfig(home=tmp_path / "home").shifted(PORT_OFFSET + 1)
        (cfg.home).mkdir()
        (cfg.home / "pipelines").symlink_to(root)
        component = FileServiceComponent(cfg, child_env(cfg))
        component.start()
        try:
            svc = Service(cfg, component)
            filler = root / "filler"
            filler.write_bytes(b"f" * 8_000_000)
            body = os.urandom(12_000_000)
            r = svc.create("resources/big.bin", len(body), sha256=hashlib.sha256(body).hexdigest())
            location = r.headers["location"]
            r = svc.patch(location, 0, body)
            assert r.status_code == 507 and "no space left" in r.json()["error"], r.text
            offset = int(httpx.head(location, headers=TUS, auth=svc.basic).headers["upload-offset"])
            assert 0 < offset < len(body)
            assert not (root / "resources" / "big.bin").exists()
            filler.unlink()
            r = svc.patch(location, offset, body[offset:])
            assert r.status_code == 204 and r.headers["upload-sha256"] == hashlib.sha256(body).hexdigest()
            assert (root / "resources" / "big.bin").read_bytes() == body
        finally:
            component.stop()
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


# --- memory ------------------------------------------------------------------------------------------------------


def test_rss_stays_under_150_mb_while_a_gb_goes_up_and_down(service: Service, tmp_path: Path) -> None:
    source = tmp_path / "gig.bin"
    size = 1 << 30
    with open(source, "wb") as f:  # sparse: reading it costs no disk, the service still writes a real GB
        f.truncate(size)
    server = psutil.Process(service.pid())
    peak = [server.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        api = service.api(tmp_path / "home")
        api.upload(source, "resources/gig.bin", chunk=64 << 20)
        with httpx.stream("GET", api.url("resources/gig.bin"), auth=service.basic, timeout=60) as r:
            got = sum(len(b) for b in r.iter_bytes(1 << 20))
        assert got == size
        with httpx.stream("GET", f"{service.url}/archive/resources", auth=service.basic, timeout=60) as r:
            assert sum(len(b) for b in r.iter_bytes(1 << 20)) > size
    finally:
        stop.set()
        sampler.join()
        (service.root / "resources" / "gig.bin").unlink(missing_ok=True)
    assert peak[0] < 150 * 2**20, f"file service RSS peaked at {peak[0] / 2**20:.0f} MiB"
