"""``ci_training.checkout`` against real git repositories: local paths, ``file://`` and smart HTTP.

Every repository lives in ``tmp_path``; commits are made with a fixed identity and without the developer's
global git configuration. The HTTP server is ``git http-backend`` behind a small ``http.server`` handler that
demands the token's Basic header, as GitLab does for a private project.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ci_training import checkout as checkout_module
from ci_training.checkout import (
    CheckoutError,
    MissingCommit,
    auth_header,
    checkout,
    git_env,
    head_sha,
)
from opsflow.errors import AdapterError, InputError, OpsflowError

Completed = subprocess.CompletedProcess[str]
TOKEN = "glpat-SECRET-0123456789"
ENCODED = base64.b64encode(f"oauth2:{TOKEN}".encode()).decode()
#: Commits reproducible and independent of the developer's ~/.gitconfig.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def commit(work: Path, name: str, text: str) -> str:
    (work / name).write_text(text)
    git("add", name, cwd=work)
    git("commit", "-q", "-m", f"{name}: {text}", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


@dataclass
class Origin:
    """A bare "GitLab" repository, the developer's clone pushing to it, and three known commits."""

    bare: Path
    work: Path
    first: str  # main~1
    second: str  # main
    feature: str  # feature, on top of main

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def push(self, *args: str) -> None:
        git("push", "-q", *args, cwd=self.work)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    bare, work = tmp_path / "origin.git", tmp_path / "dev"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("init", "-q", str(work), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=work)
    first = commit(work, "train.py", "v1")
    second = commit(work, "train.py", "v2")
    git("push", "-q", "origin", "main", cwd=work)
    git("checkout", "-q", "-b", "feature", cwd=work)
    feature = commit(work, "feature.txt", "f")
    git("push", "-q", "origin", "feature", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    return Origin(bare, work, first, second, feature)


@dataclass
class Recorder:
    """Wraps ``run_git``: every argv and environment the adapter hands to git, then the real call."""

    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)

    def argvs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    real = checkout_module.run_git

    def spy(
        argv: list[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        rec.calls.append((list(argv), dict(env)))
        return real(argv, cwd=cwd, env=env, timeout_s=timeout_s)

    monkeypatch.setattr(checkout_module, "run_git", spy)
    return rec


def test_checkout_of_a_branch_head(origin: Origin, tmp_path: Path) -> None:
    dest = checkout(str(origin.bare), origin.second, tmp_path / "build", ref="refs/heads/main")
    assert dest == tmp_path / "build"
    assert head_sha(dest) == origin.second
    assert (dest / "train.py").read_text() == "v2"
    assert git("status", "--porcelain", cwd=dest) == ""
    assert git("remote", "get-url", "origin", cwd=dest) == str(origin.bare)


def test_checkout_of_an_older_commit_and_of_another_branch(origin: Origin, tmp_path: Path) -> None:
    older = checkout(origin.url, origin.first, tmp_path / "older")
    assert head_sha(older) == origin.first
    assert (older / "train.py").read_text() == "v1"
    other = checkout(origin.url, origin.feature.upper(), tmp_path / "feature", ref="feature")
    assert head_sha(other) == origin.feature
    assert (other / "feature.txt").read_text() == "f"


def test_a_server_that_refuses_unadvertised_commits_falls_back_to_the_ref(
    origin: Origin, tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protocol v0 without ``allowAnySHA1InWant`` refuses a SHA that is no branch tip (GitLab may do the same)."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.version")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "0")
    dest = checkout(origin.url, origin.first, tmp_path / "build", ref="refs/heads/main")
    assert head_sha(dest) == origin.first
    fetches = [argv[argv.index("fetch") :] for argv in recorder.argvs() if "fetch" in argv]
    assert fetches[0][-2:] == ["origin", origin.first] and "--depth" in fetches[0]
    assert fetches[1][-2:] == ["origin", "refs/heads/main"]
    assert len(fetches) == 2  # the ref had it: no fetch of every branch


def test_head_is_verified(origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = checkout_module.run_git

    def lying(
        argv: list[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        done = real(argv, cwd=cwd, env=env, timeout_s=timeout_s)
        if argv[-2:] == ["rev-parse", "HEAD"]:
            return subprocess.CompletedProcess(argv, 0, origin.first + "\n", "")
        return done

    monkeypatch.setattr(checkout_module, "run_git", lying)
    with pytest.raises(CheckoutError, match=f"at {origin.second[:7]} but HEAD is {origin.first[:7]}"):
        checkout(origin.url, origin.second, tmp_path / "build")


def test_a_commit_removed_by_a_force_push_is_missing(origin: Origin, tmp_path: Path) -> None:
    doomed = commit(origin.work, "train.py", "v3 (to be rewritten)")
    origin.push("origin", "main")
    git("reset", "-q", "--hard", origin.second, cwd=origin.work)
    commit(origin.work, "train.py", "v3 (rewritten)")
    origin.push("--force", "origin", "main")
    git("reflog", "expire", "--expire=now", "--all", cwd=origin.bare)
    git("gc", "-q", "--prune=now", cwd=origin.bare)
    gone = subprocess.run(["git", "cat-file", "-e", doomed], cwd=origin.bare, capture_output=True, check=False)
    assert gone.returncode != 0, "the origin still has the commit: the test would prove nothing"

    with pytest.raises(MissingCommit) as info:
        checkout(origin.url, doomed, tmp_path / "build", ref="refs/heads/main")
    assert str(info.value) == f"commit {doomed[:7]} is not in {origin.url} (force-pushed away?)"
    assert info.value.sha == doomed
    assert isinstance(info.value, OpsflowError) and not isinstance(info.value, AdapterError)  # never retried


@pytest.mark.parametrize("where", ["missing path", "file URL", "closed port"])
def test_an_unreachable_repository_is_a_checkout_error(where: str, tmp_path: Path, unused_port: int) -> None:
    url = {
        "missing path": str(tmp_path / "nowhere.git"),
        "file URL": (tmp_path / "nowhere.git").as_uri(),
        "closed port": f"http://127.0.0.1:{unused_port}/group/project.git",
    }[where]
    with pytest.raises(CheckoutError, match="cannot fetch") as info:
        checkout(url, "a" * 40, tmp_path / "build", ref="main", timeout_s=30)
    assert isinstance(info.value, AdapterError)
    assert "exited" in str(info.value)  # git's own words follow


@pytest.mark.parametrize("sha", ["abc1234", "g" * 40, "a" * 41, "", " " + "a" * 39, "a" * 39 + "\n"])
def test_a_malformed_sha_is_an_input_error(sha: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        checkout(str(tmp_path), sha, tmp_path / "build")
    assert info.value.field == "checkout_sha"
    assert not (tmp_path / "build").exists()  # refused before anything is touched


def test_an_earlier_checkout_is_replaced(origin: Origin, tmp_path: Path) -> None:
    dest = tmp_path / "build"
    checkout(origin.url, origin.feature, dest)
    (dest / "stale" / "deep").mkdir(parents=True)
    (dest / "stale" / "deep" / "leftover.txt").write_text("from the last run")
    (dest / "train.py").write_text("edited by the last run")
    checkout(origin.url, origin.first, dest)
    assert head_sha(dest) == origin.first
    assert not (dest / "stale").exists() and not (dest / "feature.txt").exists()
    assert (dest / "train.py").read_text() == "v1"
    assert git("status", "--porcelain", "--ignored", cwd=dest) == ""
    assert git("for-each-ref", "--format=%(refname)", "refs/remotes/origin/feature", cwd=dest) == ""


def test_the_token_goes_to_git_only_through_the_environment(origin: Origin, tmp_path: Path, recorder: Recorder) -> None:
    checkout(origin.url, origin.second, tmp_path / "build", ref="refs/heads/main", token=TOKEN)
    assert recorder.calls
    for argv, env in recorder.calls:
        assert not any(TOKEN in arg or ENCODED in arg for arg in argv), argv
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        count = int(env["GIT_CONFIG_COUNT"])
        assert env[f"GIT_CONFIG_KEY_{count - 1}"] == "http.extraHeader"
        assert env[f"GIT_CONFIG_VALUE_{count - 1}"] == f"Authorization: Basic {ENCODED}"
    assert TOKEN not in (tmp_path / "build" / ".git" / "config").read_text()


def test_the_token_never_appears_in_an_error(tmp_path: Path, unused_port: int) -> None:
    with pytest.raises(CheckoutError) as info:
        checkout((tmp_path / "nowhere.git").as_uri(), "b" * 40, tmp_path / "build", ref="main", token=TOKEN)
    assert TOKEN not in str(info.value) and ENCODED not in str(info.value)
    # A token inside the URL would reach argv and .git/config: refused, and not repeated.
    with pytest.raises(InputError) as refused:
        checkout(f"http://oauth2:{TOKEN}@127.0.0.1:{unused_port}/x.git", "b" * 40, tmp_path / "url")
    assert refused.value.field == "repository_url" and TOKEN not in str(refused.value)
    assert not (tmp_path / "url").exists()


def test_git_env_never_inherits_another_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path))
    env = git_env(TOKEN)
    assert "GIT_DIR" not in env and "GIT_WORK_TREE" not in env
    assert env["GIT_CONFIG_VALUE_0"] == auth_header(TOKEN)


def test_head_sha_of_a_directory_that_is_no_repository(tmp_path: Path) -> None:
    with pytest.raises(CheckoutError):
        head_sha(tmp_path)


# --- smart HTTP, with authentication ----------------------------------------------------------------------


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GitHttp:
    url: str
    authorizations: list[str | None]


@pytest.fixture
def git_http(origin: Origin) -> Iterator[GitHttp]:
    """``origin`` served by ``git http-backend``; requests without ``Authorization: Basic oauth2:TOKEN`` get 401."""
    seen: list[str | None] = []
    root = origin.bare.parent
    expected = f"Basic {ENCODED}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self.serve()

        def do_POST(self) -> None:
            self.serve()

        def serve(self) -> None:
            auth = self.headers.get("Authorization")
            seen.append(auth)
            if auth != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="GitLab"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": "oauth2",
                "REMOTE_ADDR": "127.0.0.1",
            }
            if encoding := self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = encoding
            if protocol := self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = protocol
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            headers = [line.split(":", 1) for line in head.decode("latin-1").split("\r\n") if ":" in line]
            status = next((v.strip() for k, v in headers if k.lower() == "status"), "200 OK")
            self.send_response(int(status.split()[0]))
            for key, value in headers:
                if key.lower() != "status":
                    self.send_header(key, value.strip())
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield GitHttp(f"http://127.0.0.1:{server.server_address[1]}/{origin.bare.name}", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_checkout_over_http_with_a_token(origin: Origin, git_http: GitHttp, tmp_path: Path) -> None:
    dest = checkout(git_http.url, origin.second, tmp_path / "build", ref="refs/heads/main", token=TOKEN)
    assert head_sha(dest) == origin.second
    assert git_http.authorizations and set(git_http.authorizations) == {f"Basic {ENCODED}"}


@pytest.mark.parametrize("token", [None, "glpat-WRONG-987"])
def test_a_refused_login_fails_at_once_without_leaking(
    token: str | None, origin: Origin, git_http: GitHttp, tmp_path: Path
) -> None:
    with pytest.raises(CheckoutError, match="cannot fetch") as info:
        checkout(git_http.url, origin.second, tmp_path / "build", ref="main", token=token, timeout_s=20)
    message = str(info.value)
    assert token is None or token not in message
    assert git_http.authorizations  # the server was asked (and said 401), git did not wait for a password
