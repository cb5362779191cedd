"""Stage limits, the pure parts: which mechanism enforces cpus and memory, the argv prefix, the cgroup files,
the probe on a fake cgroup tree, container limits, GPU lease rules (real processes: integration/test_sp_limits.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsflow.gpu import GpuInfo
from stage_pipeline.attempt import stage_job
from stage_pipeline.definition import parse_definition
from stage_pipeline.docker_runner import container_kwargs
from stage_pipeline.gpu_leases import GpuLease, GpuShortage, leased_job, run_with_gpus
from stage_pipeline.limit_probe import delegated_cgroup, enforced
from stage_pipeline.limits import (
    JOIN_CGROUP_SCRIPT,
    HostLimits,
    gpu_env,
    lease_dir,
    pick_cores,
    plan_limits,
    shortage_message,
)
from stage_pipeline.models import StageAttempt
from stage_pipeline.runners import RunOutcome, StageJob

FALLBACK = HostLimits(cores=[0, 1, 2, 3], prlimit="/p/prlimit", taskset="/p/taskset")
V2 = HostLimits(cores=[0, 1, 2, 3], cgroup=Path("/cg/opsflow"), prlimit="/p/prlimit", taskset="/p/taskset")


def gpu(index: int) -> GpuInfo:
    return GpuInfo(index=index, uuid=f"GPU-{index}", name="stand-in", memory_used_bytes=0, memory_total_bytes=1)


# --- which mechanism ------------------------------------------------------------------------------------------
def test_no_limits_asked_means_no_prefix() -> None:
    assert plan_limits(None, None, V2, "k").model_dump() == plan_limits(None, None, FALLBACK, "k").model_dump()
    assert plan_limits(None, None, V2, "k").mechanism == "none"


def test_cgroup_v2_gets_memory_without_swap_and_a_cpu_quota() -> None:
    plan = plan_limits(2.5, 64 << 20, V2, "p.a.1", unique="42")
    assert plan.mechanism == "cgroup-v2" and plan.cgroup == Path("/cg/opsflow/opsflow-p.a.1-42")
    assert plan.cgroup_files == {"memory.max": str(64 << 20), "memory.swap.max": "0", "cpu.max": "250000 100000"}
    # The stage's own shell joins the group, then execs the stage: a constant script, the path as an argument.
    assert plan.prefix == ["/bin/sh", "-c", JOIN_CGROUP_SCRIPT, "opsflow-join-cgroup", f"{plan.cgroup}/cgroup.procs"]
    assert plan.cores is None and plan.notes == []


def test_cgroup_v2_writes_only_what_is_asked() -> None:
    assert plan_limits(None, 1 << 30, V2, "k").cgroup_files == {"memory.max": str(1 << 30), "memory.swap.max": "0"}
    assert plan_limits(0.001, None, V2, "k").cgroup_files == {"cpu.max": "1000 100000"}  # the kernel's minimum


def test_fallback_is_an_address_space_rlimit_and_an_affinity() -> None:
    plan = plan_limits(1, 64 << 20, FALLBACK, "p.a.1")
    assert plan.mechanism == "rlimit" and plan.cgroup is None
    assert plan.prefix[:3] == ["/p/prlimit", f"--as={64 << 20}", "--"]
    assert plan.prefix[3:5] == ["/p/taskset", "--cpu-list"] and plan.prefix[5] == ",".join(map(str, plan.cores or []))
    assert plan.cores is not None and len(plan.cores) == 1


def test_fractional_cpus_round_up_and_a_whole_node_is_not_pinned() -> None:
    assert len(plan_limits(1.2, None, FALLBACK, "k").cores or []) == 2
    assert plan_limits(4, None, FALLBACK, "k").prefix == []
    assert plan_limits(8, None, FALLBACK, "k").mechanism == "none"


def test_missing_tools_are_noted_not_fatal() -> None:
    bare = HostLimits(cores=[0, 1])
    plan = plan_limits(1, 1 << 30, bare, "k")
    assert plan.prefix == [] and plan.mechanism == "none"
    assert any("no prlimit" in note for note in plan.notes) and any("no taskset" in note for note in plan.notes)


def test_gpu_stages_get_no_address_space_limit() -> None:
    plan = plan_limits(1, 1 << 30, FALLBACK, "k", gpus=1)
    assert "/p/prlimit" not in plan.prefix and "CUDA" in plan.notes[0]
    assert plan_limits(1, 1 << 30, V2, "k", gpus=1).cgroup_files["memory.max"] == str(1 << 30)


def test_cores_spread_by_attempt_and_stay_in_the_allowed_set() -> None:
    allowed = [2, 5, 7, 9]
    picks = {tuple(pick_cores(allowed, 1, f"p.s.{n}")) for n in range(40)}
    assert len(picks) > 1 and all(set(p) <= set(allowed) for p in picks)
    assert pick_cores(allowed, 3, "x") == pick_cores(allowed, 3, "x")  # stable for one attempt
    assert len(set(pick_cores(allowed, 3, "x"))) == 3


# --- the probe (a fake cgroup tree) ----------------------------------------------------------------------------
def fake_proc(tmp_path: Path, subtree: str, own: str = "/worker") -> tuple[Path, Path]:
    mount = tmp_path / "cgroup2"
    (mount / own.lstrip("/")).mkdir(parents=True)
    (mount / own.lstrip("/") / "cgroup.subtree_control").write_text(subtree)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(f"30 25 0:26 / {mount} rw,nosuid - cgroup2 cgroup2 rw\n")
    (proc / "cgroup").write_text(f"4:memory:/x\n0::{own}\n")
    return proc, mount / own.lstrip("/")


def test_a_delegated_cgroup_needs_cpu_and_memory_enabled(tmp_path: Path) -> None:
    proc, group = fake_proc(tmp_path / "a", "cpu io memory pids\n")
    assert delegated_cgroup({}, proc) == group
    proc, _ = fake_proc(tmp_path / "b", "hugetlb\n")  # a hybrid machine's v2 hierarchy
    assert delegated_cgroup({}, proc) is None


def test_the_cgroup_may_be_named_and_a_v1_machine_has_none(tmp_path: Path) -> None:
    proc, group = fake_proc(tmp_path, "cpu memory")
    assert delegated_cgroup({"OPSFLOW_CGROUP": str(group)}, tmp_path / "nowhere") == group
    (proc / "mountinfo").write_text("25 1 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert delegated_cgroup({}, proc) is None


def test_enforced_creates_and_removes_the_cgroup(tmp_path: Path) -> None:
    host = V2.model_copy(update={"cgroup": tmp_path})
    plan = plan_limits(1, 1 << 20, host, "p.a.1")
    with enforced(plan) as prefix:
        assert prefix == plan.prefix
        assert (tmp_path / "opsflow-p.a.1" / "memory.max").read_text() == str(1 << 20)
        (tmp_path / "opsflow-p.a.1" / "memory.max").unlink()  # a real cgroup's files go with its rmdir
        (tmp_path / "opsflow-p.a.1" / "memory.swap.max").unlink()
        (tmp_path / "opsflow-p.a.1" / "cpu.max").unlink()
    assert not (tmp_path / "opsflow-p.a.1").exists()


# --- jobs and containers ---------------------------------------------------------------------------------------
def test_stage_job_carries_the_stage_resources(tmp_path: Path) -> None:
    d = parse_definition(
        "name: p\nstages:\n  - {name: a, command: [x], resources: {cpus: 1.5, memory: 64M, gpus: 1}}\n"
    )
    attempt = StageAttempt(stage="a", attempt=1, started=datetime.now(UTC), workspace="stages/a/1")
    job = stage_job("demo", d.stages[0], attempt, tmp_path, tmp_path / "pool")
    assert (job.cpus, job.memory_bytes, job.gpus) == (1.5, 64 << 20, 1)


def test_container_limits_cap_memory_and_swap_and_cpus() -> None:
    kw = container_kwargs(StageJob(image="i", argv=[], workdir=Path("/w"), cpus=0.5, memory_bytes=256 << 20))
    assert kw["nano_cpus"] == 500_000_000
    assert kw["mem_limit"] == kw["memswap_limit"] == 256 << 20
    unlimited = container_kwargs(StageJob(image="i", argv=[], workdir=Path("/w")))
    assert not {"nano_cpus", "mem_limit", "memswap_limit"} & set(unlimited)


def test_stage_job_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        StageJob(argv=["x"], workdir=Path("/w"), cpus=0)
    with pytest.raises(ValueError):
        StageJob(argv=["x"], workdir=Path("/w"), memory_bytes=-1)


# --- GPU leases ------------------------------------------------------------------------------------------------
def test_lease_dir_and_gpu_env() -> None:
    assert lease_dir({"OPSFLOW_GPU_LEASES": "/x"}, 1000) == Path("/x")
    assert lease_dir({}, 1000) == Path("/tmp/opsflow-gpu-leases-1000")
    assert gpu_env(["0"])["CUDA_VISIBLE_DEVICES"] == "0"


def test_shortage_names_free_and_in_use() -> None:
    text = shortage_message(1, 2, {0: "a (pid 1)", 1: ""})
    assert "asks for 1 GPU;" in text and "0 free, 2 in use" in text and "GPU 0 by a (pid 1)" in text


def test_leased_shell_job_cannot_widen_its_share() -> None:
    job = StageJob(argv=["x"], workdir=Path("/w"), gpus=1, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert leased_job(job, ["2"]).env["CUDA_VISIBLE_DEVICES"] == "2"
    container = leased_job(StageJob(image="i", workdir=Path("/w"), gpus=1), ["2"])
    assert container_kwargs(container)["device_requests"][0]["DeviceIDs"] == ["2"]


def test_leases_in_one_directory_exclude_each_other(tmp_path: Path) -> None:
    gpus = [gpu(0), gpu(1)]
    with GpuLease(2, gpus, tmp_path, holder="p.a.1") as both:
        assert both.ids == ["0", "1"]
        with pytest.raises(GpuShortage, match=r"2: 0 free, 2 in use \(GPU 0 by p.a.1 \(pid \d+\), GPU 1 by"):
            GpuLease(1, gpus, tmp_path).acquire()
    with GpuLease(1, gpus, tmp_path) as again:  # released on exit
        assert again.ids == ["0"]


def test_a_refused_lease_holds_nothing(tmp_path: Path) -> None:
    gpus = [gpu(0), gpu(1)]
    with GpuLease(1, gpus, tmp_path):
        with pytest.raises(GpuShortage, match="asks for 2 GPUs; this node has 2: 1 free, 1 in use"):
            GpuLease(2, gpus, tmp_path).acquire()
        assert GpuLease(1, gpus, tmp_path).acquire().ids == ["1"]  # GPU 1 was let go by the refused lease


class Recorder:
    def __init__(self) -> None:
        self.jobs: list[StageJob] = []

    def run(self, job: StageJob, on_line: object, should_abort: object) -> RunOutcome:
        self.jobs.append(job)
        t = datetime.now(UTC)
        return RunOutcome(exit_code=0, started=t, ended=t)


def test_run_with_gpus_leases_for_the_run_or_reports_the_shortage(tmp_path: Path) -> None:
    runner = Recorder()
    job = StageJob(name="p.t.1", argv=["x"], workdir=Path("/w"), gpus=1)
    ok = run_with_gpus(runner, job, print, lambda: False, inventory=lambda: [gpu(0), gpu(1)], directory=tmp_path)
    assert ok.succeeded and runner.jobs[0].gpu_ids == ["0"] and runner.jobs[0].env["CUDA_VISIBLE_DEVICES"] == "0"
    none = run_with_gpus(runner, job, print, lambda: False, inventory=list, directory=tmp_path)
    assert none.error == "stage p.t.1: the stage asks for 1 GPU; this node has none" and none.exit_code is None
    assert len(runner.jobs) == 1  # nothing ran
    cpu_job = StageJob(argv=["x"], workdir=Path("/w"))
    assert run_with_gpus(runner, cpu_job, print, lambda: False, inventory=list, directory=tmp_path).succeeded
    assert runner.jobs[-1] == cpu_job
