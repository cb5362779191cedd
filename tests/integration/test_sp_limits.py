"""Stage limits on real processes: a shell stage's memory and cpus are enforced by the kernel, and GPU leases
exclude each other across processes and die with their holder (a stand-in GPU list: this machine has no GPU)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsflow.gpu import GpuInfo
from stage_pipeline.gpu_leases import GpuLease, GpuShortage, run_with_gpus
from stage_pipeline.limit_probe import probe_host
from stage_pipeline.runners import RunOutcome, ShellRunner, StageJob

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def run(job: StageJob, runner: ShellRunner | None = None) -> tuple[RunOutcome, list[str]]:
    lines: list[str] = []
    outcome = (runner or ShellRunner(kill_grace_s=1.0)).run(job, lines.append, lambda: False)
    return outcome, lines


def allocate(mib: int) -> list[str]:
    """A Python stage that touches ``mib`` MiB, then says so."""
    return [
        sys.executable,
        "-c",
        f"b = bytearray({mib} * {MIB}); b[::4096] = b'x' * len(b[::4096]); print('allocated')",
    ]


# --- memory and cpus -------------------------------------------------------------------------------------------
def test_a_stage_over_its_memory_limit_fails(tmp_path: Path) -> None:
    outcome, lines = run(StageJob(name="sp-mem-over", argv=allocate(256), workdir=tmp_path, memory_bytes=64 * MIB))
    assert outcome.exit_code not in (0, None) and "allocated" not in lines, (outcome, lines)
    assert "MemoryError" in lines  # refused by the kernel, not killed for another reason


def test_a_stage_within_its_memory_limit_succeeds(tmp_path: Path) -> None:
    outcome, lines = run(StageJob(name="sp-mem-ok", argv=allocate(8), workdir=tmp_path, memory_bytes=64 * MIB))
    assert outcome.succeeded and lines == ["allocated"], (outcome, lines)


def test_the_limit_holds_for_the_stage_children_too(tmp_path: Path) -> None:
    child = shlex.join(allocate(256))
    job = StageJob(name="sp-mem-child", argv=["sh", "-c", f"{child} || echo child-refused"], workdir=tmp_path,
                   memory_bytes=64 * MIB)  # fmt: skip
    _, lines = run(job)
    assert "MemoryError" in lines and "child-refused" in lines and "allocated" not in lines, lines


def test_one_cpu_is_one_core_of_affinity_in_the_fallback(tmp_path: Path) -> None:
    host = probe_host().model_copy(update={"cgroup": None})  # the fallback, also where a cgroup v2 exists
    if len(host.cores) < 2:
        pytest.skip("needs at least two cores to see a narrower affinity")
    show = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    outcome, lines = run(StageJob(name="sp-cpu-1", argv=show, workdir=tmp_path, cpus=1), ShellRunner(host=host))
    assert outcome.succeeded and len(eval(lines[0])) == 1 and set(eval(lines[0])) <= set(host.cores), lines
    outcome, lines = run(StageJob(name="sp-cpu-all", argv=show, workdir=tmp_path, cpus=len(host.cores)),
                         ShellRunner(host=host))  # fmt: skip
    assert outcome.succeeded and eval(lines[0]) == host.cores  # the whole node: not pinned


def test_this_machine_uses_the_fallback_it_reports() -> None:
    # cgroup v1 (or a v2 hierarchy without cpu/memory): prlimit and taskset, from util-linux as setpriv is.
    host = probe_host()
    if host.cgroup is None:
        assert host.prlimit is not None and host.taskset is not None


# --- GPU leases across processes -------------------------------------------------------------------------------
STAND_IN = [GpuInfo(index=i, uuid=f"GPU-standin-{i}", name="stand-in", memory_used_bytes=0, memory_total_bytes=1)
            for i in (0, 1)]  # fmt: skip
HOLDER = """
import sys
from pathlib import Path
from opsflow.gpu import GpuInfo
from stage_pipeline.gpu_leases import GpuLease
gpus = [GpuInfo(index=i, uuid=f"GPU-standin-{i}", name="stand-in", memory_used_bytes=0, memory_total_bytes=1)
        for i in (0, 1)]
lease = GpuLease(1, gpus, Path(sys.argv[1]), holder=sys.argv[2]).acquire()
print(",".join(lease.ids), flush=True)
sys.stdin.read()  # hold until the test closes stdin, or kills us
"""


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def hold(holders: list[subprocess.Popen[str]], leases: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    """A separate process holding one GPU lease; (the process, the GPU index it got)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(leases), name], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    holders.append(proc)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_concurrent_leases_get_different_gpus_and_a_third_is_refused(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    _, first = hold(holders, tmp_path, "p.a.1")
    _, second = hold(holders, tmp_path, "p.b.1")
    assert {first, second} == {"0", "1"}
    with pytest.raises(GpuShortage) as refused:
        GpuLease(1, STAND_IN, tmp_path).acquire()
    assert "asks for 1 GPU; this node has 2: 0 free, 2 in use" in str(refused.value)
    assert "by p.a.1 (pid" in str(refused.value) and "by p.b.1 (pid" in str(refused.value)
    # Through the flow's path: the attempt fails with that error and nothing runs.
    job = StageJob(name="p.c.1", argv=["sh", "-c", "echo ran"], workdir=tmp_path, gpus=1)
    lines: list[str] = []
    result = run_with_gpus(ShellRunner(), job, lines.append, lambda: False, inventory=lambda: STAND_IN,
                           directory=tmp_path)  # fmt: skip
    assert result.error is not None and "0 free, 2 in use" in result.error and lines == []
    assert not result.succeeded


def test_a_killed_holder_releases_its_lease(tmp_path: Path, holders: list[subprocess.Popen[str]]) -> None:
    proc, got = hold(holders, tmp_path, "p.a.1")
    _, other = hold(holders, tmp_path, "p.b.1")
    with pytest.raises(GpuShortage):
        GpuLease(1, STAND_IN, tmp_path).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with GpuLease(1, STAND_IN, tmp_path) as lease:
        assert lease.ids == [got] and got != other


def test_a_shell_stage_sees_only_its_leased_gpu(tmp_path: Path, holders: list[subprocess.Popen[str]]) -> None:
    _, taken = hold(holders, tmp_path / "leases", "p.a.1")
    job = StageJob(name="p.b.1", argv=["sh", "-c", "echo $CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES"],
                   workdir=tmp_path, gpus=1)  # fmt: skip
    lines: list[str] = []
    result = run_with_gpus(ShellRunner(), job, lines.append, lambda: False, inventory=lambda: STAND_IN,
                           directory=tmp_path / "leases")  # fmt: skip
    (free,) = {"0", "1"} - {taken}
    assert result.succeeded and lines == [f"{free} {free}"], lines
