"""Node update rollouts on the real 8-node Slurm cluster of the local stack (issue cases a-n).

Ticks are driven by the test (the scheduled `node-update-tick` deployment is paused for the session); every tick
is the real `run_tick`: one Slurm snapshot, the planner, one reservation change, one apply job through srun.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from selenium import webdriver

from flows.node_update_rollout import node_update_tick
from node_update import catalog as catalog_io
from node_update import node as node_side
from node_update import spool
from node_update.codename import codename_at
from node_update.config import NodeUpdateConfig, load_config
from node_update.models import LevelReport, NodeState
from node_update.operator import Resolution, hold_node, resolve_failure, unhold_node
from node_update.slurm import NodeUpdateSlurm, parse_reservation
from node_update.tick import TickReport, run_tick
from opsflow.adapters.slurm import SlurmCLI
from opsflow.stack.config import StackConfig
from opsflow.stack.demo import run_and_wait
from tests.support import wait_until

pytestmark = pytest.mark.stack
OLD_LEVEL = "20200101000000"  # the nodes "booted" long ago
RES_LIMIT = 3


@pytest.fixture(scope="module")
def paused_schedule(stack: StackConfig) -> None:
    """Stop the scheduled tick (and drop its pending runs) so that only the test acts on the cluster."""

    async def pause() -> None:
        async with get_client() as client:
            dep = await client.read_deployment_by_name("node-update-tick/node-update-tick")
            await client.pause_deployment(dep.id)
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
            )
            for run in runs:
                await client.delete_flow_run(run.id)

    asyncio.run(pause())


@dataclass
class Rollout:
    cfg: NodeUpdateConfig
    cli: SlurmCLI
    nodes: list[str]
    reservation_sizes: list[int] = field(default_factory=list)

    def slurm(self) -> NodeUpdateSlurm:
        return NodeUpdateSlurm(self.cli)

    def bundle(self, tmp: Path, script: str) -> Path:
        bundle = tmp / f"bundle-{len(list(tmp.iterdir()))}"
        bundle.mkdir()
        path = bundle / "update.sh"
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)
        return bundle

    def reservation(self) -> list[str]:
        try:
            out = self.cli.run(["scontrol", "show", "reservation", self.cfg.reservation, "--oneliner"])
        except Exception:
            return []
        return parse_reservation(out, self.cfg.reservation) or []

    def wait_apply_jobs(self) -> None:
        wait_until(lambda: not self.cli.run(["squeue", "-h", "--name=opsflow-nu-apply"]).strip(), timeout_s=60)

    def tick(self, dry_run: bool = False) -> TickReport:
        report = run_tick(self.cfg, self.slurm(), dry_run=dry_run)
        self.reservation_sizes.append(len(self.reservation()))
        return report

    def run_until(self, done: object, max_ticks: int = 30) -> int:
        for n in range(1, max_ticks + 1):
            self.tick()
            self.wait_apply_jobs()
            if done():  # type: ignore[operator]
                return n
        raise AssertionError(f"not converged in {max_ticks} ticks: {spool.load_ledger(self.cfg.root)}")

    def levels(self) -> dict[str, str | None]:
        return {n: node_side.read_level(n) for n in self.nodes}


@pytest.fixture
def rollout(
    stack: StackConfig, paused_schedule: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Rollout]:
    monkeypatch.setenv("OPSFLOW_HOME", str(stack.home))
    monkeypatch.setenv("OPSFLOW_NU_RES_LIMIT", str(RES_LIMIT))
    monkeypatch.setenv("OPSFLOW_NU_MAX_FAILURES", "2")
    monkeypatch.delenv("OPSFLOW_NU_ROOT", raising=False)
    monkeypatch.delenv("OPSFLOW_NU_LOCAL_DIR", raising=False)
    cfg = load_config()
    cli = SlurmCLI(conf=stack.slurm_conf)
    nodes = [n.name for n in cli.nodes()]
    _reset(cfg, cli, nodes)
    yield Rollout(cfg=cfg, cli=cli, nodes=nodes)
    _reset(cfg, cli, nodes)


def _reset(cfg: NodeUpdateConfig, cli: SlurmCLI, nodes: list[str]) -> None:
    subprocess.run(["scancel", "--full", "--user=root"], env={**os.environ, "SLURM_CONF": str(cli.conf)}, check=False)
    subprocess.run(
        ["scontrol", "delete", f"ReservationName={cfg.reservation}"],
        env={**os.environ, "SLURM_CONF": str(cli.conf)},
        capture_output=True,
        check=False,
    )
    wait_until(lambda: all(not n.state.startswith(("alloc", "mix", "comp")) for n in cli.nodes()), timeout_s=60)
    # The catalog first: with no catalog the stack's periodic node checks have nothing to report, so no new
    # report lands in the spool while it is cleared.
    catalog_io.catalog_path(cfg.root).unlink(missing_ok=True)
    for sub in ("updates", "spool", "state"):
        shutil.rmtree(cfg.root / sub, ignore_errors=True)
    for node in nodes:
        node_side.write_level(node, OLD_LEVEL)
        spool.write_report(cfg.root, LevelReport(node=node, level=OLD_LEVEL, at=time.time(), source="check"))


def recent(seconds: int = 60) -> str:
    return codename_at(time.time() - seconds)


def test_a_all_idle_rollout_completes_within_res_limit(rollout: Rollout, tmp_path: Path) -> None:
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, "exit 0\n"))
    ticks = rollout.run_until(lambda: all(v == code for v in rollout.levels().values()) and not rollout.reservation())
    assert max(rollout.reservation_sizes) == RES_LIMIT
    assert all(size <= RES_LIMIT for size in rollout.reservation_sizes)
    assert ticks >= 8 // RES_LIMIT
    states = {r.state for r in spool.load_ledger(rollout.cfg.root).nodes.values()}
    assert states <= {NodeState.IDLE, NodeState.DONE}


def test_b_busy_nodes_wait_for_their_job_then_the_epilog_gets_them_updated(rollout: Rollout, tmp_path: Path) -> None:
    job = rollout.cli.submit("sleep 25", nodes=2, output=tmp_path / "busy.out", wait=False, job_name="user-job")
    busy = wait_until(
        lambda: rollout.cli.job(job.job_id).node_list if rollout.cli.job(job.job_id).state == "RUNNING" else ""
    )
    busy_nodes = set(catalog_io.expand_nodes(busy))
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, "exit 0\n"))
    while rollout.cli.job(job.job_id).state == "RUNNING":
        rollout.tick()
        # Once the idle nodes are done, free slots take the busy ones (reserve_busy): their job is left alone.
        assert all(rollout.levels()[n] == OLD_LEVEL for n in busy_nodes), "an update ran beside a job"
        rollout.wait_apply_jobs()
        time.sleep(1)
    assert rollout.cli.job(job.job_id).state in ("COMPLETING", "COMPLETED"), "the reservation disturbed the job"

    # The job ended: the real Slurm Epilog ran `opsflow nu epilog` on its nodes and asked for the update.
    def asked() -> set[str]:
        reports, _ = spool.read_reports(rollout.cfg.root)
        return {r.node for r in reports if r.node in busy_nodes and r.source == "epilog"}

    assert wait_until(lambda: asked() == busy_nodes), asked()
    rollout.run_until(lambda: all(v == code for v in rollout.levels().values()))


#: update.sh of the saturation test: it records every job Slurm shows on its node while it runs (F2: only ours).
JOBS_SEEN = 'squeue --noheader --nodelist="$NODE" --format="%j" > "$LOCAL_DIR/jobs-seen"\nexit 0\n'


def test_i_a_rollout_finishes_on_a_saturated_cluster_while_jobs_are_still_queued(
    rollout: Rollout, tmp_path: Path
) -> None:
    # Every node busy with exclusive one-node jobs and a backlog behind them: a freed node goes to the next job
    # at once, so a tick never sees an idle node outside the reservation.
    for _ in range(60):
        rollout.cli.run(["sbatch", "--parsable", "--job-name=user-backlog", "--nodes=1", "--exclusive",
                         f"--output={tmp_path}/backlog-%j.out", "--wrap=sleep 8"])  # fmt: skip
    assert wait_until(lambda: all(n.state.startswith(("alloc", "mix")) for n in rollout.cli.nodes()), timeout_s=60)
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, JOBS_SEEN))
    ticks, deadline = 0, time.monotonic() + 180
    while not all(v == code for v in rollout.levels().values()):
        assert time.monotonic() < deadline, f"not converged in {ticks} ticks: {spool.load_ledger(rollout.cfg.root)}"
        rollout.tick()
        rollout.wait_apply_jobs()
        ticks += 1
        time.sleep(1)  # a job has to end before its node can start: tick at the pace of a short aggregation delay
    pending = rollout.cli.run(["squeue", "--noheader", "--name=user-backlog", "--states=PENDING", "--format=%i"])
    assert pending.split(), f"the backlog emptied first ({ticks} ticks): the case was not saturated"
    assert all(size <= RES_LIMIT for size in rollout.reservation_sizes)  # F6
    for name in rollout.nodes:  # F2: while update.sh ran, the node ran no other job
        seen = (node_side.local_dir(name) / "jobs-seen").read_text().split()
        assert set(seen) == {"opsflow-nu-apply"}, (name, seen)


def test_c_failing_update_leaves_the_node_in_fail_and_the_others_finish(rollout: Rollout, tmp_path: Path) -> None:
    code = recent()
    script = 'if [ "$NODE" = nid002 ]; then echo "disk full" >&2; exit 3; fi\n'
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, script))
    others = [n for n in rollout.nodes if n != "nid002"]
    rollout.run_until(lambda: all(rollout.levels()[n] == code for n in others) and rollout.reservation() == ["nid002"])
    rec = spool.load_ledger(rollout.cfg.root).nodes["nid002"]
    assert rec.state == NodeState.FAIL and "exited 3" in rec.reason and "disk full" in rec.reason
    assert rollout.reservation() == ["nid002"]
    resolve_failure(rollout.cfg.root, "nid002", Resolution.RELEASE)
    rollout.run_until(lambda: not rollout.reservation())
    assert rollout.levels()["nid002"] == OLD_LEVEL


def test_j_a_failed_health_check_is_fail_and_fail_survives_a_manual_edit_and_a_reboot(
    rollout: Rollout, tmp_path: Path
) -> None:
    code = recent()
    bundle = rollout.bundle(tmp_path, "exit 0\n")
    (bundle / "check.sh").write_text('#!/bin/sh\nif [ "$NODE" = nid002 ]; then echo "nlm: ib0 down" >&2; exit 5; fi\n')
    (bundle / "check.sh").chmod(0o755)
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=bundle)
    others = [n for n in rollout.nodes if n != "nid002"]
    rollout.run_until(lambda: all(rollout.levels()[n] == code for n in others) and rollout.reservation() == ["nid002"])
    rec = spool.load_ledger(rollout.cfg.root).nodes["nid002"]
    assert rec.state == NodeState.FAIL and "check.sh exited 5" in rec.reason and "ib0 down" in rec.reason
    assert rollout.levels()["nid002"] == OLD_LEVEL  # the check failed before local.version was written

    # An operator deletes the reservation by hand: the next tick puts the FAIL node back, and says so.
    rollout.cli.run(["scontrol", "delete", f"ReservationName={rollout.cfg.reservation}"])
    report = rollout.tick()
    assert report.plan.restored == ["nid002"] and rollout.reservation() == ["nid002"]
    assert any("nid002: FAIL outside the reservation, put back" in note for note in report.plan.notes)

    # A reboot gives it a new level, not a pass: it stays FAIL and reserved until an operator resolves it.
    node_side.boot(rollout.cfg.root, "nid002")
    rollout.tick()
    assert spool.load_ledger(rollout.cfg.root).nodes["nid002"].state == NodeState.FAIL
    assert rollout.reservation() == ["nid002"]
    resolve_failure(rollout.cfg.root, "nid002", Resolution.RELEASE)
    rollout.run_until(lambda: not rollout.reservation())


def test_k_operator_holds_go_through_the_tick_and_a_manual_edit_is_reported(rollout: Rollout, tmp_path: Path) -> None:
    rollout.tick()  # the nodes' reports reach the ledger: they are known to the service
    hold_node(rollout.cfg.root, "nid001", "out", "long benchmark", by="alice")
    hold_node(rollout.cfg.root, "nid008", "in", "bad DIMM", by="bob")
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, "exit 0\n"))
    first = rollout.tick()
    assert "nid008" in rollout.reservation() and "nid001" not in rollout.reservation()
    assert len(rollout.reservation()) <= RES_LIMIT  # the held node counts against the limit
    assert first.plan.manual_edit == ""

    # Someone adds a node by hand: reported on the next tick, then set back.
    wanted = rollout.reservation()
    rollout.cli.run(["scontrol", "update", f"ReservationName={rollout.cfg.reservation}",
                     f"Nodes={','.join(sorted({*wanted, 'nid001'}))}"])  # fmt: skip
    edited = rollout.tick()
    assert edited.plan.manual_edit == "reservation edited outside the orchestrator: added nid001"
    assert "nid001" not in rollout.reservation()
    others = [f"nid00{i}" for i in range(2, 8)]
    rollout.run_until(lambda: all(rollout.levels()[n] == code for n in others) and rollout.reservation() == ["nid008"])
    assert rollout.levels()["nid001"] == OLD_LEVEL and rollout.levels()["nid008"] == OLD_LEVEL
    unhold_node(rollout.cfg.root, "nid001")
    unhold_node(rollout.cfg.root, "nid008")
    rollout.run_until(lambda: all(v == code for v in rollout.levels().values()) and not rollout.reservation())


def test_d_retire_mid_rollout_starts_no_new_node(rollout: Rollout, tmp_path: Path) -> None:
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, "sleep 3\n"))
    rollout.tick()  # reserves the first RES_LIMIT nodes
    started = rollout.tick().plan.start  # starts them
    assert started
    # Retire once their update.sh runs: those finish, no other node starts it.
    assert wait_until(lambda: all(spool.log_path(rollout.cfg.root, n, code).exists() for n in started))
    catalog_io.retire(rollout.cfg.root, code)
    rollout.run_until(lambda: not rollout.reservation())
    updated = [n for n, v in rollout.levels().items() if v == code]
    assert updated == started


def test_e_boot_after_publish_counts_as_updated(rollout: Rollout, tmp_path: Path) -> None:
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid001", bundle=rollout.bundle(tmp_path, "exit 9\n"))
    node_side.boot(rollout.cfg.root, "nid001")  # F7: the node rebooted with the new image
    report = rollout.tick()
    assert report.plan.reserve == [] and rollout.reservation() == []
    assert (spool.load_ledger(rollout.cfg.root).nodes["nid001"].level or "") > code


def test_n_nodes_that_ran_no_job_and_did_not_boot_are_reported_by_the_periodic_check(
    rollout: Rollout, stack: StackConfig, tmp_path: Path
) -> None:
    # No report in the spool, no job on the cluster, no boot: only the stack's `node-checks` loop (the seed's
    # cron job, every node_check_every_s) can tell the orchestrator that the nodes are behind.
    shutil.rmtree(rollout.cfg.root / "spool", ignore_errors=True)
    code = recent()
    published = time.time()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, "exit 0\n"))

    def checked() -> set[str]:
        reports, _ = spool.read_reports(rollout.cfg.root)
        return {r.node for r in reports if r.source == "check" and r.at >= published and r.level == OLD_LEVEL}

    assert wait_until(lambda: checked() == set(rollout.nodes), timeout_s=stack.node_check_every_s + 30), checked()
    assert not rollout.cli.run(["squeue", "-h"]).strip()  # no job and no tick asked them
    rollout.run_until(lambda: all(v == code for v in rollout.levels().values()) and not rollout.reservation())


def test_f_two_updates_apply_in_codename_order(rollout: Rollout, tmp_path: Path) -> None:
    older, newer = recent(120), recent(60)
    script = 'echo "$CODENAME" >> "$LOCAL_DIR/applied"\n'
    catalog_io.publish(rollout.cfg.root, newer, "nid003", bundle=rollout.bundle(tmp_path, script))
    catalog_io.publish(rollout.cfg.root, older, "nid003", bundle=rollout.bundle(tmp_path, script))
    rollout.run_until(lambda: rollout.levels()["nid003"] == newer)
    applied = (node_side.local_dir("nid003") / "applied").read_text().split()
    assert applied[-2:] == [older, newer]


def test_g_dry_run_changes_nothing(rollout: Rollout, tmp_path: Path) -> None:
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, "exit 0\n"))
    before = sorted(p.relative_to(rollout.cfg.root) for p in rollout.cfg.root.rglob("*"))
    report = rollout.tick(dry_run=True)
    assert report.plan.reserve  # it did decide something...
    assert rollout.reservation() == []  # ...and did none of it
    assert sorted(p.relative_to(rollout.cfg.root) for p in rollout.cfg.root.rglob("*")) == before
    assert not rollout.cli.run(["squeue", "-h"]).strip()


@pytest.mark.parametrize("step", ["after_snapshot", "after_reservation", "after_start", "after_ledger"])
def test_h_a_tick_killed_at_any_step_is_repaired_by_the_next(rollout: Rollout, tmp_path: Path, step: str) -> None:
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-008]", bundle=rollout.bundle(tmp_path, "exit 0\n"))
    program = (
        "from node_update.tick import run_tick; from node_update.config import load_config;"
        "from node_update.slurm import NodeUpdateSlurm; from opsflow.adapters.slurm import SlurmCLI;"
        f"run_tick(load_config(), NodeUpdateSlurm(SlurmCLI(conf={str(rollout.cli.conf)!r})))"
    )
    for _ in range(3):  # kill it at the same step on several successive ticks
        env = {**os.environ, "OPSFLOW_NU_FAULT": step}
        done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 99, done.stderr
        assert len(rollout.reservation()) <= RES_LIMIT
        rollout.wait_apply_jobs()
    rollout.run_until(lambda: all(v == code for v in rollout.levels().values()) and not rollout.reservation())
    assert all(size <= RES_LIMIT for size in rollout.reservation_sizes)


def test_tick_deployment_runs_on_the_worker(rollout: Rollout, tmp_path: Path) -> None:
    catalog_io.publish(rollout.cfg.root, recent(), "nid[001-002]", bundle=rollout.bundle(tmp_path, "exit 0\n"))
    run = run_and_wait("node-update-tick/node-update-tick", {"dry_run": True}, timeout_s=180)
    assert run.state is not None and run.state.is_completed(), run.state
    assert rollout.reservation() == []


def test_tick_flow_reports_a_failure_as_event_and_artifacts(
    rollout: Rollout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(rollout.cli.conf))  # the flow with no block reads the environment only
    code = recent()
    catalog_io.publish(rollout.cfg.root, code, "nid001", bundle=rollout.bundle(tmp_path, "exit 4\n"))
    for _ in range(4):  # reserve, start, record the result
        report = node_update_tick(settings_block=None)
        rollout.wait_apply_jobs()
        if report.plan.new_failures:
            break
    assert set(report.plan.new_failures) == {"nid001"}

    async def evidence() -> tuple[list[dict[str, object]], list[object]]:
        async with get_client() as client:
            found = await client._client.post(
                "/events/filter", json={"filter": {"event": {"name": ["opsflow.node-update.failed"]}}}
            )
            found.raise_for_status()
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["node-update-states"]))
            )
        return list(found.json()["events"]), list(artifacts)

    def found() -> tuple[list[dict[str, object]], list[object]] | None:
        events, artifacts = asyncio.run(evidence())
        return (events, artifacts) if events else None

    seen = wait_until(found)
    assert seen is not None, "no opsflow.node-update.failed event"
    events, artifacts = seen
    assert any(e["payload"]["node"] == "nid001" and "exited 4" in e["payload"]["reason"] for e in events)  # type: ignore[index]
    assert artifacts


# --- the canary approval gate (publish --approve): the tick flow, its approval run on the cpu worker ------------
#: Starting the approval run's process on the worker, and again after the answer: tens of seconds on 2 cores.
APPROVAL_WAIT_S = 240


@dataclass
class GatedRollout:
    """A rollout ticked by the `node-update-tick` flow with the `local` Blocks, as the scheduled deployment does."""

    rollout: Rollout
    original_res_limit: int

    def tick(self) -> TickReport:
        report = node_update_tick(settings_block="local")
        self.rollout.reservation_sizes.append(len(self.rollout.reservation()))
        self.rollout.wait_apply_jobs()
        return report

    def until_asked(self, code: str) -> str:
        """Tick until the approval run of ``code`` shows its form; returns its id."""
        from node_update.prefect_api import load_approval_runs
        from opsflow.adapters.prefect_runs import wait_for_form

        deadline = time.monotonic() + APPROVAL_WAIT_S
        while time.monotonic() < deadline:
            self.tick()
            run_id = load_approval_runs(self.rollout.cfg.root).get(code)
            if run_id and wait_for_form(run_id, timeout_s=30):
                return run_id
        raise AssertionError(f"no approval form for {code}: {spool.load_ledger(self.rollout.cfg.root)}")

    def entry(self, code: str) -> str:
        text = catalog_io.catalog_path(self.rollout.cfg.root).read_text()
        return next((line for line in text.splitlines() if code in line), "")


@pytest.fixture
def gated(rollout: Rollout, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedRollout]:
    """The `local` settings Block at res_limit 2 (the environment overrides none of it), restored afterwards."""
    from blocks import NodeUpdateSettings, load_block

    monkeypatch.delenv("OPSFLOW_NU_RES_LIMIT")
    block = load_block(NodeUpdateSettings, "local")
    original = block.res_limit
    block.res_limit = 2
    block.save("local", overwrite=True)
    try:
        yield GatedRollout(rollout=rollout, original_res_limit=original)
    finally:
        block = load_block(NodeUpdateSettings, "local")
        block.res_limit = original
        block.save("local", overwrite=True)


def test_l_a_gated_canary_waits_for_a_decision_then_widens_with_a_new_res_limit_through_the_api(
    gated: GatedRollout, tmp_path: Path, stack: StackConfig
) -> None:
    import opsflow
    from blocks import NodeUpdateSettings, load_block
    from opsflow.adapters.prefect_runs import flow_run_state

    rollout, code = gated.rollout, recent()
    nu = opsflow.connect(stack.home).node_update
    nu.publish(code, nodes="nid[001-008]", bundle=rollout.bundle(tmp_path, "exit 0\n"), canary=2, approve=True)
    run_id = gated.until_asked(code)
    canary = [n for n, v in rollout.levels().items() if v == code]
    assert canary == ["nid001", "nid002"], rollout.levels()
    # While it waits, the ticks go on and widen nothing: no other node is reserved or updated.
    for _ in range(2):
        report = gated.tick()
        assert report.plan.reserve == [] and report.plan.awaiting_approval == {code: canary}
    assert "waiting for an operator's decision" in spool.load_ledger(rollout.cfg.root).nodes["nid003"].reason
    assert flow_run_state(run_id) == "PAUSED"

    update = nu.decide(code, "widen", res_limit=4, comment="canary looks fine", by="alice",
                       timeout_s=APPROVAL_WAIT_S)  # fmt: skip
    assert update.approval == "widened"
    assert "widened by alice" in gated.entry(code) and "res_limit 4: canary looks fine" in gated.entry(code)
    assert load_block(NodeUpdateSettings, "local").res_limit == 4  # the form's res_limit went to the settings
    assert wait_until(lambda: flow_run_state(run_id) == "COMPLETED", timeout_s=APPROVAL_WAIT_S)
    sizes_before = len(rollout.reservation_sizes)
    for _ in range(20):
        gated.tick()
        if all(v == code for v in rollout.levels().values()) and not rollout.reservation():
            break
    assert all(v == code for v in rollout.levels().values()), rollout.levels()
    assert max(rollout.reservation_sizes[sizes_before:]) == 4  # the new res_limit, and never more (F6)


def test_m_a_gated_canary_retired_in_the_prefect_ui(
    gated: GatedRollout, tmp_path: Path, stack: StackConfig, browser: webdriver.Chrome
) -> None:
    from opsflow.adapters.prefect_runs import flow_run_state
    from opsflow.stack.env import api_auth_string
    from tests.e2e.ui_support import log_in, resume_in_ui

    rollout, code = gated.rollout, recent()
    catalog_io.publish(rollout.cfg.root, code, "nid[001-004]", canary=1, approve=True,
                       bundle=rollout.bundle(tmp_path, "exit 0\n"))  # fmt: skip
    run_id = gated.until_asked(code)
    base, path = f"http://127.0.0.1:{stack.prefect_port}", f"/runs/flow-run/{run_id}"
    try:
        log_in(browser, base, api_auth_string(stack), path)
        fields = {"Action": "retire", "Comment": "bad canary, seen in the UI", "By": "carol"}
        resume_in_ui(browser, f"{base}{path}", fields)
    except Exception as exc:
        browser.save_screenshot(str(tmp_path / "failure.png"))
        exc.add_note(f"browser state: {tmp_path}/failure.png")
        raise
    assert wait_until(lambda: flow_run_state(run_id) == "COMPLETED", timeout_s=APPROVAL_WAIT_S)
    assert "retired after its canary by carol" in gated.entry(code) and gated.entry(code).startswith("#")
    assert code not in [e.codename for e in catalog_io.load_catalog(rollout.cfg.root).entries]
    for _ in range(3):
        gated.tick()
    updated = sorted(n for n, v in rollout.levels().items() if v == code)
    assert len(updated) == 1 and not rollout.reservation(), (updated, rollout.reservation())
