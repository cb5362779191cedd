"""The git adapter of CI training: a fresh working tree at exactly the pushed commit, verified.

`prefect-gitlab`'s ``GitLabRepository`` clones a branch or tag (``git clone -b``), never a SHA, and a branch can
move between the push and the run. :func:`checkout` therefore starts from an empty repository and fetches the
commit itself: ``git fetch --depth 1 origin <sha>`` first (cheap, and what GitLab serves for a reachable
commit), then the pushed ``ref`` (a server may refuse an unadvertised SHA), then every branch and tag with full
history. It checks the commit out detached and verifies ``HEAD``. A commit that none of this finds is gone from
the repository (a force push removed it): :class:`MissingCommit`, which no retry can mend. A git that cannot
reach the repository at all is :class:`CheckoutError`, an :class:`~opsflow.errors.AdapterError` worth retrying.

Secrets: a GitLab token never appears in an argument list, a URL, a log line or an exception message. It goes
to git through the environment (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``, git 2.31+) as
an ``http.extraHeader`` with HTTP Basic ``oauth2:<token>``, the form GitLab accepts for personal, project and
OAuth tokens; git's stderr is redacted before it is quoted. ``GIT_TERMINAL_PROMPT=0`` makes a refused login
fail at once instead of waiting for a password.

Example:
    >>> auth_header("glpat-xyz")
    'Authorization: Basic b2F1dGgyOmdscGF0LXh5eg=='
    >>> env = git_env("glpat-xyz", base={"PATH": "/usr/bin", "GIT_DIR": "/elsewhere"})
    >>> env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_0"], env["GIT_TERMINAL_PROMPT"], "GIT_DIR" in env
    ('1', 'http.extraHeader', '0', False)
    >>> redact("fatal: unable to access 'https://oauth2:glpat-xyz@gitlab.example/x.git/'", "glpat-xyz")
    "fatal: unable to access 'https://***@gitlab.example/x.git/'"
    >>> git_command("fetch", "--depth", "1", "origin", "a" * 40)[:4]
    ['git', '-c', 'advice.detachedHead=false', '-c']
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from opsflow.errors import AdapterError, InputError, OpsflowError

#: A full commit id as GitLab's push payload carries it (``checkout_sha``); SHA-256 repositories are not handled.
SHA_RE = re.compile(r"[0-9a-fA-F]{40}")
#: Inherited variables that would point git at another repository than the one being built.
REPOSITORY_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
)
#: How many of git's last stderr lines an error message quotes.
STDERR_LINES = 6
#: ``scheme://user:password@host``: the credentials part of a URL.
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
#: ``scheme://user:password@``: a URL that would put a secret into argv and ``.git/config``.
_PASSWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@")


class CheckoutError(AdapterError):
    """git could not clone, fetch or check out (network, permissions, a broken repository): worth a retry."""


class MissingCommit(OpsflowError):
    """The commit is not in the repository any more (a force push removed it): a retry cannot help.

    >>> str(MissingCommit("1a2b3c4d" + "0" * 32, "https://gitlab.example/ml/loans.git"))
    'commit 1a2b3c4 is not in https://gitlab.example/ml/loans.git (force-pushed away?)'
    """

    def __init__(self, sha: str, url: str) -> None:
        self.sha, self.url = sha, url
        super().__init__(f"commit {sha[:7]} is not in {url} (force-pushed away?)")


def auth_header(token: str) -> str:
    """The HTTP header that authenticates ``token`` to GitLab over https (Basic ``oauth2:<token>``).

    >>> auth_header("t")
    'Authorization: Basic b2F1dGgyOnQ='
    """
    return "Authorization: Basic " + base64.b64encode(f"oauth2:{token}".encode()).decode("ascii")


def git_env(token: str | None = None, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment git runs in: ``base`` (default: this process's), never prompting, and with ``token``
    appended to the ``GIT_CONFIG_*`` settings as an ``http.extraHeader`` (after any already there).

    >>> sorted(git_env(None, base={}).items())
    [('GIT_TERMINAL_PROMPT', '0')]
    >>> e = git_env("t", base={"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "a.b", "GIT_CONFIG_VALUE_0": "c"})
    >>> e["GIT_CONFIG_COUNT"], e["GIT_CONFIG_KEY_1"], e["GIT_CONFIG_VALUE_1"]
    ('2', 'http.extraHeader', 'Authorization: Basic b2F1dGgyOnQ=')
    """
    env = dict(os.environ if base is None else base)
    for name in REPOSITORY_VARIABLES:
        env.pop(name, None)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if token:
        try:
            index = int(env.get("GIT_CONFIG_COUNT", "0"))
        except ValueError:
            index = 0
        env[f"GIT_CONFIG_KEY_{index}"] = "http.extraHeader"
        env[f"GIT_CONFIG_VALUE_{index}"] = auth_header(token)
        env["GIT_CONFIG_COUNT"] = str(index + 1)
    return env


def git_command(*args: str) -> list[str]:
    """The argument list of one git call: fixed, secret-free settings, then ``args`` (no shell, ever).

    >>> git_command("rev-parse", "HEAD")
    ['git', '-c', 'advice.detachedHead=false', '-c', 'init.defaultBranch=main', 'rev-parse', 'HEAD']
    """
    return ["git", "-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main", *args]


def redact(text: str, token: str | None = None) -> str:
    """``text`` without ``token`` (plain or inside its Basic header) and without credentials in URLs.

    >>> redact("https://me:secret@host/x and secret", "secret")
    'https://***@host/x and ***'
    """
    text = _USERINFO_RE.sub(r"\g<scheme>***@", text)
    if token:
        encoded = auth_header(token).removeprefix("Authorization: Basic ")
        text = text.replace(encoded, "***").replace(token, "***")
    return text


def run_git(
    argv: list[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run one git command in its own process group (so a timeout also ends ``git-remote-https``).

    Returns the completed process whatever its exit status; raises :class:`CheckoutError` on a timeout or a
    git that cannot start. The message is not redacted here: callers know the token.

    >>> run_git(git_command("--version"), cwd=Path("."), env=git_env(), timeout_s=30).stdout.startswith("git ")
    True
    """
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise CheckoutError(f"cannot run git: {exc}") from exc
    try:
        stdout, stderr = proc.communicate(timeout=max(timeout_s, 0.001))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CheckoutError(f"`git {argv_summary(argv)}` timed out") from None
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def argv_summary(argv: list[str]) -> str:
    """The git sub-command and its arguments, without the fixed ``-c`` settings of :func:`git_command`.

    >>> argv_summary(git_command("fetch", "origin", "main"))
    'fetch origin main'
    """
    rest = argv[1:]
    while len(rest) >= 2 and rest[0] == "-c":
        rest = rest[2:]
    return " ".join(rest)


def _tail(text: str, lines: int = STDERR_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "(no output)"


class _Git:
    """git calls in one repository under one deadline, with errors redacted for one token and URL."""

    def __init__(self, repo: Path, token: str | None, deadline: float) -> None:
        self.repo, self.token, self.deadline = repo, token, deadline
        self.env = git_env(token)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise CheckoutError(self.redact(f"`git {args[0]}` not started: the checkout ran out of time"))
        try:
            return run_git(git_command(*args), cwd=self.repo, env=self.env, timeout_s=remaining)
        except CheckoutError as exc:
            raise CheckoutError(self.redact(str(exc))) from None

    def check(self, *args: str) -> str:
        """Run and return stdout; a non-zero exit is a :class:`CheckoutError` quoting git's stderr."""
        done = self(*args)
        if done.returncode != 0:
            raise CheckoutError(self.failure(done))
        return done.stdout

    def failure(self, done: subprocess.CompletedProcess[str]) -> str:
        argv = [str(a) for a in done.args]
        return self.redact(f"`git {argv_summary(argv)}` exited {done.returncode}: {_tail(done.stderr or done.stdout)}")

    def redact(self, text: str) -> str:
        return redact(text, self.token)

    def has_commit(self, sha: str) -> bool:
        return self("cat-file", "-e", f"{sha}^{{commit}}").returncode == 0


def _validate_sha(sha: str) -> str:
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        shown = repr(sha) if len(repr(sha)) <= 60 else repr(sha)[:57] + "..."
        raise InputError(
            "checkout", [(0, "checkout_sha", f"must be a full commit id (40 hex characters), got {shown}")]
        )
    return sha.lower()


def _fresh_dir(dest: Path) -> None:
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)


def checkout(
    url: str,
    sha: str,
    dest: Path,
    *,
    ref: str | None = None,
    token: str | None = None,
    timeout_s: float = 300,
) -> Path:
    """A fresh working tree of exactly commit ``sha`` of ``url`` in ``dest`` (removed first), ``HEAD`` verified.

    ``url`` is an https/http GitLab clone URL, a ``file://`` URL or a local path; ``ref`` (``refs/heads/main``
    or ``main``) is the pushed branch, fetched when the server refuses the bare SHA; ``token`` authenticates
    over http(s) (see the module docstring); ``timeout_s`` bounds the whole checkout. Returns ``dest``.

    Raises :class:`~opsflow.errors.InputError` for a malformed ``sha`` (field ``checkout_sha``) or a ``url``
    with a password in it (field ``repository_url``: the token belongs in ``token``),
    :class:`MissingCommit` when the repository was reached but has no such commit, and :class:`CheckoutError`
    for everything else.

    Example (a throw-away repository with one commit)::

        >>> import shutil, subprocess, tempfile
        >>> src = Path(tempfile.mkdtemp()) / "src"
        >>> _ = subprocess.run(["git", "init", "-q", str(src)], check=True)
        >>> _ = subprocess.run(["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@x",
        ...                     "commit", "-q", "--allow-empty", "-m", "one"], check=True)
        >>> sha = head_sha(src)
        >>> work = checkout(str(src), sha, src.parent / "work")
        >>> head_sha(work) == sha
        True
        >>> shutil.rmtree(src.parent)
    """
    sha = _validate_sha(sha)
    if _PASSWORD_RE.match(url):
        why = "carries credentials (user:password@); pass the token separately, it must stay out of argv"
        raise InputError("checkout", [(0, "repository_url", why)])
    shown_url = redact(url, token)
    deadline = time.monotonic() + timeout_s
    dest = Path(dest)
    try:
        _fresh_dir(dest)
    except OSError as exc:
        raise CheckoutError(f"cannot prepare {dest}: {exc}") from exc
    git = _Git(dest, token, deadline)
    git.check("init", "-q")
    git.check("remote", "add", "origin", url)

    last = git("fetch", "--quiet", "--no-tags", "--depth", "1", "origin", sha)
    if last.returncode != 0 and ref:
        last = git("fetch", "--quiet", "--no-tags", "origin", ref)
    if last.returncode != 0 or not git.has_commit(sha):
        full = ["fetch", "--quiet", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"]
        if git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            full.insert(1, "--unshallow")
        last = git(*full)
        if last.returncode != 0:
            raise CheckoutError(f"cannot fetch {shown_url}: {git.failure(last)}")
        if not git.has_commit(sha):
            raise MissingCommit(sha, shown_url)

    git.check("checkout", "--quiet", "--detach", sha)
    head = git.check("rev-parse", "HEAD").strip()
    if head != sha:
        raise CheckoutError(f"checked out {shown_url} at {sha[:7]} but HEAD is {head[:7] or '(none)'}")
    return dest


def head_sha(repo: Path) -> str:
    """The full commit id ``HEAD`` of the working tree ``repo`` points at (:class:`CheckoutError` if none).

    >>> len(head_sha(Path(".")))  # doctest: +SKIP
    40
    """
    repo = Path(repo)
    git = _Git(repo, None, time.monotonic() + 60)
    out = git.check("rev-parse", "--show-toplevel", "HEAD^{commit}").split()
    if len(out) != 2 or not SHA_RE.fullmatch(out[1]):
        raise CheckoutError(f"cannot read HEAD of {repo}: {out}")
    if Path(out[0]).resolve() != repo.resolve():  # git found a repository above ``repo``, not ``repo``
        raise CheckoutError(f"{repo} is not the top of a git working tree (that is {out[0]})")
    return out[1]
