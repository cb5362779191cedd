"""Workspaces: hard-link copies (no bytes copied), sealing, and what an unprivileged stage process can do."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stage_pipeline.workspace import (
    SEALED_UID,
    prepare_workspace,
    resource_pool,
    seal,
    unprivileged_prefix,
    workspace_dir,
)

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="sealing by ownership needs the runner to be root")


def first_output(project: Path) -> Path:
    ws = prepare_workspace(project, "detect", 1, None)
    (ws / "video.bin").write_bytes(b"\x00" * 4096)
    (ws / "sub" / "deep").mkdir(parents=True)
    (ws / "sub" / "deep" / "boxes.csv").write_text("frame,x,y\n1,2,3\n")
    (ws / "run.sh").write_text("#!/bin/sh\n")
    (ws / "run.sh").chmod(0o755)
    os.symlink("sub/deep/boxes.csv", ws / "latest.csv")
    os.symlink("sub", ws / "sublink")
    seal(ws)
    return ws


def test_workspace_is_a_hard_link_copy(tmp_path: Path) -> None:
    first = first_output(tmp_path)
    second = prepare_workspace(tmp_path, "track", 1, first)
    assert second == tmp_path / "stages" / "track" / "1" == workspace_dir(tmp_path, "track", 1)
    for rel in ["video.bin", "sub/deep/boxes.csv", "run.sh"]:
        a, b = (first / rel).stat(), (second / rel).stat()
        assert a.st_ino == b.st_ino and a.st_dev == b.st_dev  # the same inode: no bytes copied
        assert a.st_nlink >= 2
    assert os.readlink(second / "latest.csv") == "sub/deep/boxes.csv"
    assert (second / "latest.csv").read_text().startswith("frame")
    assert os.readlink(second / "sublink") == "sub"
    # Directories are new and writable: the stage may add files.
    assert (second / "sub").stat().st_ino != (first / "sub").stat().st_ino
    assert stat.S_IMODE((second / "sub").stat().st_mode) & stat.S_IWUSR
    (second / "sub" / "new.txt").write_text("new")
    assert not (first / "sub" / "new.txt").exists()


def test_seal_makes_everything_read_only(tmp_path: Path) -> None:
    ws = first_output(tmp_path)
    assert stat.S_IMODE((ws / "video.bin").stat().st_mode) == 0o444
    assert stat.S_IMODE((ws / "run.sh").stat().st_mode) == 0o555  # executables stay executable
    assert stat.S_IMODE((ws / "sub" / "deep").stat().st_mode) == 0o555
    assert stat.S_IMODE(ws.stat().st_mode) == 0o555
    if os.geteuid() == 0:
        owners = {p.lstat().st_uid for p in [ws, *ws.rglob("*")]}
        assert owners == {SEALED_UID}
    seal(ws)  # idempotent


def test_refuses_symlinks_leaving_the_tree(tmp_path: Path) -> None:
    for target in ["/etc/passwd", "../../secret", "b/../x"]:
        src = tmp_path / f"src-{len(target)}"
        src.mkdir()
        (src / "b").symlink_to(".")  # `b/..` is lexically inside, but b is the root itself: escapes
        os.symlink(target, src / "link")
        with pytest.raises(ValueError, match="leaves the workspace"):
            prepare_workspace(tmp_path / "project", "s", 1, src)
    assert list((tmp_path / "project" / "stages" / "s").iterdir()) == []  # nothing half-made left


def test_refuses_special_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with pytest.raises(ValueError, match="not a file, directory or symlink"):
        prepare_workspace(tmp_path / "project", "s", 1, src)


def test_retry_replaces_an_unsealed_workspace_but_never_a_sealed_one(tmp_path: Path) -> None:
    ws = prepare_workspace(tmp_path, "s", 1, None)
    (ws / "partial").write_text("half")
    again = prepare_workspace(tmp_path, "s", 1, None)
    assert list(again.iterdir()) == []
    seal(again)
    with pytest.raises(FileExistsError, match="sealed"):
        prepare_workspace(tmp_path, "s", 1, None)
    with pytest.raises(ValueError):
        prepare_workspace(tmp_path, "../x", 1, None)
    with pytest.raises(ValueError):
        workspace_dir(tmp_path, "s", 0)


def test_resource_pool_is_sealed(tmp_path: Path) -> None:
    pool = resource_pool(tmp_path)
    assert pool == tmp_path / "resources"
    assert stat.S_IMODE(pool.stat().st_mode) == 0o555
    assert resource_pool(tmp_path) == pool  # idempotent


def run_unprivileged(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*unprivileged_prefix(), sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )


@as_root
def test_unprivileged_stage_cannot_touch_sealed_files_but_can_replace_its_links(tmp_path: Path) -> None:
    first = first_output(tmp_path)
    second = prepare_workspace(tmp_path, "track", 1, first)
    sealed, linked = first / "sub" / "deep" / "boxes.csv", second / "sub" / "deep" / "boxes.csv"
    assert unprivileged_prefix()[-1] == "--"

    for code in [
        f"open({str(sealed)!r}, 'a').write('x')",
        f"open({str(linked)!r}, 'a').write('x')",  # in place through the link: refused as well
        f"import os; os.chmod({str(linked)!r}, 0o666)",
        f"import os; os.unlink({str(sealed)!r})",  # the sealed directory is not writable either
        f"open({str(first / 'new.txt')!r}, 'w')",
    ]:
        done = run_unprivileged(code)
        assert done.returncode != 0, code
        assert "PermissionError" in done.stderr, done.stderr

    replace = (
        f"import os; p = {str(linked)!r}; os.unlink(p); open(p, 'w').write('replaced\\n'); "
        f"open({str(second / 'added.txt')!r}, 'w').write('ok')"
    )
    done = run_unprivileged(replace)
    assert done.returncode == 0, done.stderr
    assert linked.read_text() == "replaced\n"
    assert sealed.read_text() == "frame,x,y\n1,2,3\n"  # the sealed original keeps its content
    assert linked.stat().st_ino != sealed.stat().st_ino
    assert (second / "added.txt").read_text() == "ok"


def test_no_prefix_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert unprivileged_prefix() == []
