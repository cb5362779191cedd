"""Stage runners: the pure parts (line splitting, container kwargs) and ShellRunner with real processes."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import psutil
import pytest

from stage_pipeline.docker_runner import container_kwargs
from stage_pipeline.runners import (
    MAX_LINE_BYTES,
    STAGE_LABEL,
    LineSplitter,
    RunOutcome,
    ShellRunner,
    StageJob,
)

NOBODY = 65534


def run(job: StageJob, abort_when: str | None = None) -> tuple[RunOutcome, list[str]]:
    """Run ``job`` with ShellRunner; abort once a line contains ``abort_when``."""
    lines: list[str] = []
    outcome = ShellRunner(kill_grace_s=1.0).run(
        job, lines.append, lambda: abort_when is not None and any(abort_when in line for line in lines)
    )
    return outcome, lines


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone: it runs nothing and holds nothing)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pids(lines: list[str], word: str) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.fullmatch(rf"{word} (\d+)", line))]


# --- pure ------------------------------------------------------------------------------------------------------
def test_splitter_handles_split_terminators_carriage_returns_and_bad_utf8() -> None:
    s = LineSplitter()
    assert s.feed(b"a\r") == []  # a lone \r at the end may be half of \r\n
    assert s.feed(b"\nb\rc\n\nd\xff") == ["a", "b", "c", ""]
    assert s.flush() == ["d\ufffd"]
    assert s.flush() == []


def test_splitter_cuts_endless_lines() -> None:
    s = LineSplitter()
    out = s.feed(b"x" * (MAX_LINE_BYTES * 2 + 5))
    assert [len(line) for line in out] == [MAX_LINE_BYTES, MAX_LINE_BYTES]
    assert s.flush() == ["xxxxx"]


def test_job_needs_argv_or_image() -> None:
    with pytest.raises(ValueError, match="argv, an image"):
        StageJob(workdir=Path("/w"))
    with pytest.raises(ValueError):
        StageJob(argv=["true"], workdir=Path("/w"), gpus=-1)


def test_container_kwargs_mounts_env_labels_and_no_capabilities() -> None:
    job = StageJob(
        name="detect", image="busybox", argv=["sh", "-c", "true"], env={"A": "1"}, workdir=Path("/p/ws"),
        resources=Path("/pool"), labels={"opsflow.project": "p1"},
    )  # fmt: skip
    kw = container_kwargs(job, network_mode="none")
    assert kw["image"] == "busybox" and kw["command"] == ["sh", "-c", "true"]
    assert kw["environment"]["A"] == "1"
    assert kw["working_dir"] == "/workspace"
    assert kw["volumes"] == {
        "/p/ws": {"bind": "/workspace", "mode": "rw"},
        "/pool": {"bind": "/resources", "mode": "ro"},
    }
    assert kw["cap_drop"] == ["ALL"]
    assert kw["environment"]["OPSFLOW_RESOURCES"] == "/resources" and "OPSFLOW_INPUT" not in kw["environment"]
    assert kw["labels"] == {"opsflow.project": "p1", STAGE_LABEL: "detect"}
    assert kw["network_mode"] == "none"
    assert "device_requests" not in kw
    assert "detach" not in kw  # create() + start(): containers.run would try to pull a missing image


def test_container_kwargs_mount_the_project_input_read_only() -> None:
    job = StageJob(image="busybox", argv=["true"], workdir=Path("/w"), resources=Path("/pool"), inputs=Path("/p/in"))
    kw = container_kwargs(job)
    assert kw["volumes"]["/p/in"] == {"bind": "/input", "mode": "ro"}
    assert kw["environment"]["OPSFLOW_INPUT"] == "/input"


def test_container_kwargs_gpu_requests() -> None:
    by_count = container_kwargs(StageJob(image="i", argv=[], workdir=Path("/w"), gpus=2))
    assert by_count["command"] is None  # the image's own CMD
    (req,) = by_count["device_requests"]
    assert req["Count"] == 2 and req["Capabilities"] == [["gpu"]] and not req["DeviceIDs"]
    by_id = container_kwargs(StageJob(image="i", argv=["x"], workdir=Path("/w"), gpus=1, gpu_ids=["0", "GPU-ab"]))
    (req,) = by_id["device_requests"]
    assert req["DeviceIDs"] == ["0", "GPU-ab"] and req["Capabilities"] == [["gpu"]] and not req["Count"]


def test_container_kwargs_refuses_a_job_without_image() -> None:
    with pytest.raises(ValueError, match="no image"):
        container_kwargs(StageJob(argv=["true"], workdir=Path("/w")))


# --- ShellRunner -----------------------------------------------------------------------------------------------
def test_lines_exit_code_and_workdir(tmp_path: Path) -> None:
    script = "echo frame 1/2; echo oops >&2; printf 'bad \\377\\n'; echo hello > out.txt; printf tail; exit 3"
    outcome, lines = run(StageJob(argv=["sh", "-c", script], workdir=tmp_path))
    assert lines == ["frame 1/2", "oops", "bad \ufffd", "tail"]
    assert outcome.exit_code == 3
    assert not (outcome.aborted or outcome.timed_out or outcome.error or outcome.succeeded)
    assert outcome.started <= outcome.ended
    assert (tmp_path / "out.txt").read_text() == "hello\n"


def test_env_is_added_to_the_inherited_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_INHERITED", "from-parent")
    job = StageJob(argv=["sh", "-c", 'echo "$SP_STAGE $SP_INHERITED"'], env={"SP_STAGE": "from-job"}, workdir=tmp_path)
    outcome, lines = run(job)
    assert outcome.succeeded
    assert lines == ["from-job from-parent"]


def test_a_shell_stage_is_told_where_the_read_only_areas_are(tmp_path: Path) -> None:
    job = StageJob(
        argv=["sh", "-c", 'echo "$OPSFLOW_RESOURCES $OPSFLOW_INPUT"'], workdir=tmp_path,
        resources=Path("/store/resources"), inputs=Path("/store/projects/p/input"),
    )  # fmt: skip
    outcome, lines = run(job)
    assert outcome.succeeded and lines == ["/store/resources /store/projects/p/input"]


def test_python_stage_output_streams_line_by_line(tmp_path: Path) -> None:
    # The abort fires on the first line while the stage still sleeps: only possible if lines arrive unbuffered.
    code = "import time; print('first'); time.sleep(1000)"
    outcome, lines = run(StageJob(argv=[sys.executable, "-c", code], workdir=tmp_path), abort_when="first")
    assert outcome.aborted and lines == ["first"]


def test_stage_leads_its_own_session(tmp_path: Path) -> None:
    # So signals to the worker's process group miss it, and its tree can be found by session id.
    code = "import os; print(os.getsid(0) == os.getpid() != os.getsid(os.getppid()))"
    outcome, lines = run(StageJob(argv=[sys.executable, "-c", code], workdir=tmp_path))
    assert outcome.succeeded and lines == ["True"]


def test_timeout_kills_the_stage(tmp_path: Path) -> None:
    outcome, _ = run(StageJob(argv=["sleep", "1000"], workdir=tmp_path, timeout_s=0.5))
    assert outcome.timed_out and not outcome.aborted
    assert outcome.exit_code == 128 + 15  # SIGTERM


def test_abort_kills_the_whole_tree(tmp_path: Path) -> None:
    script = "sh -c 'sleep 1000 & echo grandchild $!; wait' & echo child $!; wait"
    outcome, lines = run(StageJob(argv=["sh", "-c", script], workdir=tmp_path), abort_when="grandchild")
    assert outcome.aborted and not outcome.timed_out
    started = pids(lines, "child") + pids(lines, "grandchild")
    assert len(started) == 2
    assert [pid for pid in started if alive(pid)] == []


def test_a_stage_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    # An ignored signal stays ignored in children: both the shell and its sleep outlive SIGTERM.
    script = "trap '' TERM; sleep 1000 & echo sleeper $!; wait; wait"
    outcome, lines = run(StageJob(argv=["sh", "-c", script], workdir=tmp_path), abort_when="sleeper")
    assert outcome.aborted and outcome.exit_code == 128 + 9  # SIGKILL
    (sleeper,) = pids(lines, "sleeper")
    assert not alive(sleeper)


def test_what_a_finished_stage_leaves_running_is_killed(tmp_path: Path) -> None:
    # The background sleep keeps stdout open: without the session clean-up run() would wait for it.
    outcome, lines = run(StageJob(argv=["sh", "-c", "sleep 1000 & echo bg $!"], workdir=tmp_path))
    assert outcome.exit_code == 0 and not outcome.aborted
    (bg,) = pids(lines, "bg")
    assert not alive(bg)


def test_missing_program_is_reported(tmp_path: Path) -> None:
    outcome, lines = run(StageJob(argv=["sp-no-such-program"], workdir=tmp_path))
    assert not outcome.succeeded
    # As root setpriv reports it (exit 127); otherwise Popen cannot start it at all.
    if outcome.error is None:
        assert outcome.exit_code == 127 and any("sp-no-such-program" in line for line in lines)
    else:
        assert "sp-no-such-program" in outcome.error and outcome.exit_code is None


def test_shell_runner_refuses_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DockerRunner"):
        run(StageJob(image="busybox", argv=["true"], workdir=tmp_path))


@pytest.mark.skipif(os.geteuid() != 0, reason="root only: other users are stopped by plain file permissions")
def test_root_stage_cannot_write_a_sealed_file(tmp_path: Path) -> None:
    def seal(name: str) -> Path:
        path = tmp_path / name
        path.write_text("original\n")
        os.chown(path, NOBODY, NOBODY)
        path.chmod(0o444)
        return path

    sealed, control = seal("sealed.txt"), seal("control.txt")
    script = "echo changed > sealed.txt || echo write-refused; chmod 644 sealed.txt || echo chmod-refused"
    _, lines = run(StageJob(argv=["sh", "-c", script], workdir=tmp_path))
    assert "write-refused" in lines and "chmod-refused" in lines, lines
    assert sealed.read_text() == "original\n"
    assert sealed.stat().st_mode & 0o777 == 0o444
    # Control: with root's capabilities (no prefix) the same write goes through.
    unprotected = ShellRunner(prefix=[]).run(
        StageJob(argv=["sh", "-c", "echo changed > control.txt"], workdir=tmp_path), print, lambda: False
    )
    assert unprotected.succeeded and control.read_text() == "changed\n"
