"""The node update API: where its configuration comes from, and a rollout ticked to convergence in-process.

The rollout runs the real tick (lock, catalog, spool, ledger, planner) and the real node-side ``apply`` against a
fake Slurm that keeps the reservation in memory and runs each apply job's nodes at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import opsflow
from node_update import node as node_side
from node_update.models import ClusterSnapshot, SlurmNodeView
from node_update.slurm import APPLY_JOB_NAME, NodeUpdateSlurm
from node_update.tick import RolloutTimeout, TickReport
from opsflow.adapters.slurm import SlurmCLI
from opsflow.api import Site
from opsflow.api.node_update import SETTINGS_SLUG, SLURM_SLUG, NodeUpdateAPI
from opsflow.errors import InputError, NotFoundError

U1 = "20260201000000"
NODES = [f"nid{i:03d}" for i in range(1, 6)]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in list(os.environ):
        if var.startswith(("PREFECT_", "OPSFLOW_", "SLURM")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("OPSFLOW_NU_LOCAL_DIR", str(tmp_path / "nodes" / "{node}"))
    return tmp_path / "home"


def site_with_blocks(home: Path, blocks: dict[tuple[str, str], dict[str, Any]]) -> Site:
    """A site (not the local stack) whose Block documents are ``blocks[(slug, name)]``."""
    site = Site("http://site.invalid/api", None, "prod", home, is_local=False)

    def block_values(slug: str, name: str | None = None) -> dict[str, Any]:
        try:
            return blocks[(slug, name or site.block)]
        except KeyError:
            raise NotFoundError(f"no {slug} block named {name!r}") from None

    site.block_values = block_values  # type: ignore[method-assign,assignment]
    return site


def bundle(tmp_path: Path, script: str = "exit 0\n") -> Path:
    path = tmp_path / f"bundle-{len(list(tmp_path.glob('bundle-*')))}"
    path.mkdir()
    (path / "update.sh").write_text("#!/bin/sh\n" + script)
    (path / "update.sh").chmod(0o755)
    return path


# --- configuration -------------------------------------------------------------------------------------------
def test_local_mode_uses_the_stack_root_and_its_slurm_conf(home: Path) -> None:
    conf = home / "slurm" / "etc" / "slurm.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("")
    api = opsflow.connect(home).node_update
    assert not api.uses_blocks
    assert api.config().root == home / "shared" / "node-update"
    assert api.slurm().cli.conf == conf


def test_local_mode_leaves_a_set_slurm_conf_alone(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "slurm" / "etc").mkdir(parents=True)
    (home / "slurm" / "etc" / "slurm.conf").write_text("")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/slurm.conf")
    assert opsflow.connect(home).node_update.slurm().cli.conf is None  # SlurmCLI then keeps SLURM_CONF


def test_site_mode_reads_the_blocks_and_the_environment_overrides_them(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"root": "/scratch/nu", "res_limit": 16, "reservation": "nu", "max_failures": 3, "slurm_block": "daint"}
    cluster = {"conf_path": "/etc/slurm/daint.conf", "bin_dir": "/opt/slurm/bin", "shared_dir": "/scratch"}
    site = site_with_blocks(home, {(SETTINGS_SLUG, "prod"): settings, (SLURM_SLUG, "daint"): cluster})
    api = NodeUpdateAPI(site)
    assert api.uses_blocks
    cfg = api.config()
    assert (cfg.root, cfg.res_limit, cfg.reservation) == (Path("/scratch/nu"), 16, "nu")
    cli = api.slurm().cli
    assert (cli.conf, cli.bin_dir) == (Path("/etc/slurm/daint.conf"), Path("/opt/slurm/bin"))
    monkeypatch.setenv("OPSFLOW_NU_RES_LIMIT", "2")
    assert api.config().res_limit == 2


def test_a_block_name_given_in_local_mode_is_read(home: Path) -> None:
    site = site_with_blocks(home, {(SETTINGS_SLUG, "test"): {"root": "/tmp/nu-test", "res_limit": 1}})
    site.is_local = True
    assert NodeUpdateAPI(site).config().root == home / "shared" / "node-update"  # no name: no Block read
    assert NodeUpdateAPI(site).using("test").config().root == Path("/tmp/nu-test")


def test_an_unknown_block_is_not_found(home: Path) -> None:
    with pytest.raises(NotFoundError, match="prod"):
        NodeUpdateAPI(site_with_blocks(home, {})).config()


def test_a_bad_environment_value_names_the_variable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSFLOW_NU_MAX_FAILURES", "many")
    with pytest.raises(InputError, match=r"OPSFLOW_NU_MAX_FAILURES='many'"):
        opsflow.connect(home).node_update.status()


# --- a rollout, ticked in this process -------------------------------------------------------------------------
class FakeSlurm(NodeUpdateSlurm):
    """Idle nodes, a reservation kept in memory, apply jobs that run `opsflow nu apply`'s function at once."""

    def __init__(self, root: Path, nodes: list[str]) -> None:
        super().__init__(SlurmCLI())
        self.root, self.nodes = root, nodes
        self.reservation: list[str] | None = None
        self.argv: list[list[str]] = []

    def snapshot(self, reservation: str, apply_job_name: str = APPLY_JOB_NAME) -> ClusterSnapshot:
        self.commands_run += 3
        views = [SlurmNodeView(name=n, state="idle", has_job=False) for n in self.nodes]
        return ClusterSnapshot(nodes=views, reservation=self.reservation)

    def set_reservation(self, name: str, nodes: Sequence[str] | None, current: Sequence[str] | None) -> None:
        if sorted(nodes or []) != sorted(current or []):
            self.commands_run += 1
        self.reservation = sorted(nodes) if nodes else None

    def start_apply(self, name: str, nodes: Sequence[str], *, env: Mapping[str, str], **kw: Any) -> int:
        self.commands_run += 1
        self.argv.append(list(kw["command"]))
        assert env["OPSFLOW_NU_ROOT"] == str(self.root)
        for node in nodes:
            node_side.apply(self.root, node)
        return 1


def fake_rollout(home: Path, monkeypatch: pytest.MonkeyPatch, nodes: list[str]) -> tuple[NodeUpdateAPI, FakeSlurm]:
    api = opsflow.connect(home).node_update
    root = api.config().root
    slurm = FakeSlurm(root, nodes)
    monkeypatch.setattr(NodeUpdateAPI, "slurm", lambda self, values=None: slurm)
    for node in nodes:  # booted before the update was published (F7)
        node_side.boot(root, node, now=datetime(2026, 1, 1))
    return api, slurm


def test_a_rollout_converges_within_res_limit_and_returns_one_row_per_tick(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSFLOW_NU_RES_LIMIT", "2")
    api, slurm = fake_rollout(home, monkeypatch, NODES)
    api.publish(U1, nodes="nid[001-005]", bundle=bundle(tmp_path))
    rows = api.rollout(max_ticks=20, every_s=0, progress=False)
    assert rows[-1].converged and rows[-1].updated == rows[-1].covered == len(NODES)
    assert [r.tick for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.reservation <= 2 for r in rows)
    assert not slurm.reservation  # the last tick gave every node back
    assert all(argv[-2:] == ["nu", "apply"] and argv[0].endswith("/opsflow") for argv in slurm.argv)
    assert {s.state for s in api.status()} <= {"DONE", "IDLE"}
    frame = rows.to_frame()
    assert list(frame["updated"])[-1] == len(NODES) and "fail" in frame.columns


def test_a_failed_node_counts_as_settled_and_resolve_moves_it_on(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, slurm = fake_rollout(home, monkeypatch, NODES[:3])
    api.publish(U1, nodes="nid[001-003]", bundle=bundle(tmp_path, '[ "$NODE" = nid002 ] && exit 5\nexit 0\n'))
    rows = api.rollout(max_ticks=20, every_s=0, progress=False)
    assert rows[-1].converged and (rows[-1].updated, rows[-1].fail) == (2, 1)
    assert slurm.reservation == ["nid002"]  # FAIL stays reserved until an operator decides
    status = {s.node: s for s in api.status()}
    assert status["nid002"].state == "FAIL" and "exited 5" in status["nid002"].reason
    assert api.resolve("nid002", release=True).state == "IDLE"
    report = api.tick()
    assert slurm.reservation is None, report


def test_a_rollout_that_cannot_converge_raises_with_its_rows(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = fake_rollout(home, monkeypatch, ["nid001"])
    api.publish(U1, nodes="nid[001-002]", bundle=bundle(tmp_path))  # nid002 is not in the cluster
    with pytest.raises(RolloutTimeout, match="did not converge in 4 ticks") as err:
        api.rollout(max_ticks=4, every_s=0, progress=False)
    assert len(err.value.ticks) == 4 and err.value.ticks[-1].updated == 1


def test_a_dry_run_tick_shows_as_a_table(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api, slurm = fake_rollout(home, monkeypatch, NODES[:2])
    api.publish(U1, nodes="nid[001-002]", bundle=bundle(tmp_path))
    report = api.tick(dry_run=True)
    assert isinstance(report, TickReport) and report.dry_run and slurm.reservation is None
    assert report.plan.reserve == ["nid001", "nid002"] and report.counts["IDLE"] == 0
    assert "would reserve" in report._repr_html_() and "| would reserve | nid001, nid002 |" in report._repr_markdown_()
    assert report.summary(tick=1).ready == 2
    assert list(report.to_frame()["ready"]) == [2]


def test_updates_and_simulate_render_as_tables(home: Path, tmp_path: Path) -> None:
    api = opsflow.connect(home).node_update
    api.publish(U1, nodes="nid[001-004],nid007", bundle=bundle(tmp_path), canary=1)
    updates = api.updates()
    assert [(u.codename, u.nodes, u.node_count, u.canary) for u in updates] == [(U1, "nid[001-004,007]", 5, 1)]
    assert "nid[001-004,007]" in updates._repr_html_()
    assert api.retire(U1).codename == U1 and list(api.updates()) == []
    sim = api.simulate(nodes=20, res_limit=5, utilization=0.0)
    assert sim.makespan_hours * 60 == pytest.approx(44.0)
    assert "makespan" in sim._repr_html_() and str(sim).startswith("nodes 20, res_limit 5")
