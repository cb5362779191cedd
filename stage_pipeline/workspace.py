"""Stage workspaces: a hard-link copy of the previous output, sealed read-only when the stage ends.

Seed 003 ("per stage evolving project files", "global (read-only) input resources") and the issue: stage outputs
are immutable; the next stage works on a copy, made of hard links so big files cost no bytes.

Why hard links are safe: a sealed file is mode 0444 and, when the runner is root, owned by 65534; stage processes
run as uid 0 without any capability (:func:`unprivileged_prefix`; the Docker runner drops all capabilities), so
they can neither write nor chmod it, only unlink it from their own (root-owned, writable) workspace directory and
create a new file in its place. The sealed original keeps its content. When the runner is not root, sealing is
chmod only and a stage of the same user could chmod a linked file back (documented limitation).

Example:
    >>> import tempfile
    >>> project = Path(tempfile.mkdtemp())
    >>> first = prepare_workspace(project, "detect", 1, None)
    >>> _ = (first / "out.txt").write_text("boxes")
    >>> seal(first)
    >>> second = prepare_workspace(project, "track", 1, first)
    >>> (second / "out.txt").read_text(), (second / "out.txt").stat().st_ino == (first / "out.txt").stat().st_ino
    ('boxes', True)
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from stage_pipeline.store import check_name, remove_tree

#: The owner of sealed trees when the runner is root (``nobody``/``nogroup``).
SEALED_UID = SEALED_GID = 65534

_SETPRIV_ARGS = ["--no-new-privs", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]


def unprivileged_prefix() -> list[str]:
    """The argv prefix that starts a stage without capabilities ([] when the runner is not root).

    The process keeps uid 0 (the venv's Python under /root stays reachable) but loses CAP_DAC_OVERRIDE and
    CAP_FOWNER, so sealed files (0444, owned by 65534) are out of its reach.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        # Running stages as full root would let them rewrite sealed outputs: refuse rather than run unprotected.
        raise RuntimeError("setpriv (util-linux) is needed to drop capabilities of stage processes run as root")
    return [setpriv, *_SETPRIV_ARGS]


def workspace_dir(project_dir: Path, stage: str, attempt: int) -> Path:
    """``<project>/stages/<stage>/<attempt>``."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    return Path(project_dir) / "stages" / check_name(stage, "stage") / str(attempt)


def _is_sealed(path: Path) -> bool:
    return not stat.S_IMODE(path.lstat().st_mode) & stat.S_IWUSR


def _check_link(source_root: Path, link: Path) -> None:
    """Refuse a symlink whose target leaves the tree (it would expose other files through the copy)."""
    target = os.readlink(link)
    if os.path.isabs(target):
        raise ValueError(f"{link}: absolute symlink {target!r} leaves the workspace")
    # realpath follows every link on the way (a lexical check misses e.g. `x -> b/..` with `b -> .`).
    resolved = Path(os.path.realpath(link))
    if resolved != source_root and source_root not in resolved.parents:
        raise ValueError(f"{link}: symlink {target!r} leaves the workspace")


def _link_tree(source: Path, dest: Path) -> None:
    source_root = Path(os.path.realpath(source))
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        for name in [*dirnames, *filenames]:
            src, dst = Path(dirpath) / name, dest / rel / name
            mode = src.lstat().st_mode
            if stat.S_ISLNK(mode):
                _check_link(source_root, src)
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISDIR(mode):
                dst.mkdir()  # a fresh, writable directory: the stage may add and replace files in it
            elif stat.S_ISREG(mode):
                try:
                    os.link(src, dst, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    shutil.copy2(src, dst, follow_symlinks=False)  # another filesystem: a copy is the only way
            else:
                raise ValueError(f"{src}: not a file, directory or symlink; refused in a workspace")
        # os.walk lists a symlink to a directory among dirnames; it was copied as a link, never descend into it.
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]


def prepare_workspace(project_dir: Path, stage: str, attempt: int, previous_output: Path | None) -> Path:
    """Create the workspace of a stage attempt: empty, or a hard-link copy of ``previous_output``.

    Built beside the target and renamed into place, so a crash never leaves a half-copied workspace. A leftover
    unsealed workspace of the same attempt (a retried start) is replaced; a sealed one is refused.
    """
    target = workspace_dir(project_dir, stage, attempt)
    if target.exists() or target.is_symlink():
        if target.is_symlink() or not target.is_dir() or _is_sealed(target):
            raise FileExistsError(f"{target}: the workspace of this attempt exists and is sealed")
        remove_tree(target)
    if previous_output is not None and not Path(previous_output).is_dir():
        raise FileNotFoundError(f"{previous_output}: the previous output is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".new-{attempt}."))
    try:
        tmp.chmod(0o755)
        if previous_output is not None:
            _link_tree(Path(previous_output), tmp)
        os.rename(tmp, target)
    except BaseException:
        remove_tree(tmp)
        raise
    return target


def seal(path: Path) -> None:
    """Make a tree read-only: files 0444 (0555 if executable), dirs 0555; chowned to 65534 when run as root.

    Idempotent. Hard-linked files already sealed by an earlier stage are unchanged.
    """
    path = Path(path)
    as_root = os.geteuid() == 0

    def one(entry: str) -> None:
        mode = os.lstat(entry).st_mode
        if as_root:
            os.lchown(entry, SEALED_UID, SEALED_GID)  # first: chown would clear set-id bits after chmod
        if stat.S_ISLNK(mode):
            return
        if stat.S_ISDIR(mode) or mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
            os.chmod(entry, 0o555)
        else:
            os.chmod(entry, 0o444)

    # Bottom-up, so a directory is closed only after everything in it.
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in [*filenames, *dirnames]:
            one(os.path.join(dirpath, name))
    one(str(path))


def resource_pool(root: Path) -> Path:
    """The global read-only resource pool ``<root>/resources`` (created if absent, sealed each call).

    Root writes into it despite the seal; whoever adds files calls this again to seal them. Stages see it
    read-only (sealed for shell stages, mounted ``ro`` in Docker).
    """
    pool = Path(root) / "resources"
    pool.mkdir(parents=True, exist_ok=True)
    seal(pool)
    return pool


class WorkspaceFile(BaseModel):
    """One file of a workspace (a symlink is listed as itself, never followed)."""

    path: str = Field(description="relative to the workspace, '/'-separated")
    size: int = Field(description="bytes")
    mtime: datetime


def list_files(workspace: Path) -> list[WorkspaceFile]:
    """Every file under ``workspace`` (directories are implied by the paths), sorted by path; [] if absent.

    >>> import tempfile
    >>> ws = Path(tempfile.mkdtemp())
    >>> (ws / "out").mkdir(); _ = (ws / "out" / "boxes.csv").write_text("1,2")
    >>> [(f.path, f.size) for f in list_files(ws)]
    [('out/boxes.csv', 3)]
    """
    root = Path(workspace)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # A symlink to a directory is an entry of its own, never a way out of the workspace.
        links = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if d not in links)
        for name in [*filenames, *links]:
            entry = Path(dirpath) / name
            info = entry.lstat()
            found.append(
                WorkspaceFile(
                    path=entry.relative_to(root).as_posix(),
                    size=info.st_size,
                    mtime=datetime.fromtimestamp(info.st_mtime, UTC),
                )
            )
    return sorted(found, key=lambda f: f.path)
