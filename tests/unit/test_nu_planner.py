"""The tick planner, tick by tick on hand-made clusters, and its invariants over generated snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from node_update.models import (
    ApplyResult,
    Catalog,
    CatalogEntry,
    ClusterSnapshot,
    Ledger,
    LevelReport,
    NodeRecord,
    NodeState,
    NodeUpdateConfig,
    Plan,
    SlurmNodeView,
)
from node_update.planner import plan_tick, usable
from node_update.tick import rollout_progress

BOOT = "20260101000000"
U1 = "20260201000000"
U2 = "20260301000000"
NODES = [f"nid{i:03d}" for i in range(1, 9)]


def config(**limits: Any) -> NodeUpdateConfig:
    """The service's configuration with these limits (the planner never looks at the root)."""
    return NodeUpdateConfig(root=Path("/shared/nu"), **limits)


def snapshot(reservation: list[str] | None, busy: set[str] = frozenset(), applying: list[str] = ()) -> ClusterSnapshot:  # type: ignore[assignment]
    return ClusterSnapshot(
        nodes=[SlurmNodeView(name=n, state="alloc" if n in busy else "idle", has_job=n in busy) for n in NODES],
        reservation=reservation,
        applying=list(applying),
    )


def catalog(*entries: tuple[str, list[str], int]) -> Catalog:
    return Catalog(entries=[CatalogEntry(codename=c, nodes=sorted(n), canary=k) for c, n, k in entries])


def booted() -> Ledger:
    return Ledger(nodes={n: NodeRecord(level=BOOT) for n in NODES})


def ok(node: str, codename: str) -> ApplyResult:
    return ApplyResult(node=node, codename=codename, ok=True, exit_code=0, at=1.0)


def test_rollout_reserves_then_starts_then_releases_within_res_limit() -> None:
    cat, cfg = catalog((U1, NODES, 0)), config(res_limit=3)
    p1 = plan_tick(snapshot(None), cat, booted(), [], [], cfg)
    assert p1.reserve == ["nid001", "nid002", "nid003"] and p1.start == []
    p2 = plan_tick(snapshot(p1.reservation), cat, p1.ledger, [], [], cfg)
    assert p2.start == ["nid001", "nid002", "nid003"] and p2.reservation == p1.reservation
    p3 = plan_tick(snapshot(p2.reservation, applying=p2.start), cat, p2.ledger, [], [], cfg)
    assert {p3.ledger.nodes[n].state for n in p2.start} == {NodeState.UPDATING}
    assert p3.start == [] and p3.reserve == []
    p4 = plan_tick(snapshot(p3.reservation), cat, p3.ledger, [], [ok(n, U1) for n in p2.start], cfg)
    assert p4.release == ["nid001", "nid002", "nid003"]
    assert p4.reserve == ["nid004", "nid005", "nid006"]
    assert p4.ledger.nodes["nid001"].level == U1 and p4.ledger.nodes["nid001"].state == NodeState.DONE


def test_busy_nodes_are_never_reserved_without_reserve_busy_and_reserved_busy_nodes_wait() -> None:
    cat = catalog((U1, NODES, 0))
    old = config(res_limit=8, reserve_busy=False)
    plan = plan_tick(snapshot(None, busy={"nid001", "nid002"}), cat, booted(), [], [], old)
    assert plan.reserve == NODES[2:]
    assert "with a job" in plan.ledger.nodes["nid001"].reason
    plan = plan_tick(snapshot(None, busy={"nid001", "nid002"}), cat, booted(), [], [], config(res_limit=8))
    assert plan.reserve == NODES  # the default: the free slots take the busy ones too
    # A job slipped onto a reserved node (IGNORE_JOBS): it stays READY and does not start.
    later = plan_tick(snapshot(["nid003"], busy={"nid003"}), cat, booted(), [], [], config(res_limit=1))
    assert later.start == [] and later.reservation == ["nid003"]
    assert later.ledger.nodes["nid003"].state == NodeState.READY


def test_free_slots_go_to_idle_nodes_first_then_to_busy_nodes_whose_jobs_end_soonest() -> None:
    ends = {"nid001": "2026-12-03T16:00:00", "nid002": "2026-12-03T14:05:00", "nid003": "2026-12-03T14:01:00"}
    nodes = [SlurmNodeView(name=n, state="alloc", has_job=n != "nid008") for n in NODES]
    nodes[3] = SlurmNodeView(name="nid004", state="draining", has_job=True)
    nodes[7] = SlurmNodeView(name="nid008", state="idle", has_job=False)
    ends["nid004"] = "2026-12-03T13:00:00"
    cat, cfg = catalog((U1, NODES, 0)), config(res_limit=3)
    plan = plan_tick(ClusterSnapshot(nodes=nodes, reservation=None, job_ends=ends), cat, booted(), [], [], cfg)
    assert plan.reserve == ["nid002", "nid003", "nid008"]  # idle nid008, then the two soonest ends; never drain
    assert plan.ledger.nodes["nid003"].reason == "reserved while its job runs (expected end 2026-12-03T14:01:00)"
    assert plan.start == []
    # Next tick: nid003's job ended, nid002's still runs: only the idle ones start (F2).
    nodes[2] = SlurmNodeView(name="nid003", state="idle", has_job=False)
    snap = ClusterSnapshot(nodes=nodes, reservation=plan.reservation, job_ends=ends)
    nxt = plan_tick(snap, cat, plan.ledger, [], [], cfg)
    assert nxt.start == ["nid003", "nid008"] and nxt.reservation == plan.reservation
    assert nxt.ledger.nodes["nid002"].reason == "waiting: node is alloc with a job"


def test_a_fail_node_outside_the_reservation_is_put_back_even_in_place_of_a_ready_one() -> None:
    led = booted()
    led.nodes["nid005"] = NodeRecord(level=BOOT, state=NodeState.FAIL, failed_codename=U1, reason="x")
    cat, cfg = catalog((U1, NODES, 0)), config(res_limit=2)
    plan = plan_tick(snapshot(["nid001", "nid002"]), cat, led, [], [], cfg)
    assert plan.restored == ["nid005"] and plan.reservation == ["nid001", "nid005"]
    assert plan.release == ["nid002"] and plan.start == ["nid001"]
    assert any("nid005: FAIL outside the reservation, put back" in note for note in plan.notes)
    assert plan.ledger.nodes["nid005"].state == NodeState.FAIL


def test_failed_node_stays_reserved_counts_against_the_limit_and_others_go_on() -> None:
    cat, cfg = catalog((U1, NODES, 0)), config(res_limit=2, max_failures=3)
    bad = ApplyResult(node="nid001", codename=U1, ok=False, exit_code=3, log_tail="x\ndisk full", at=1.0)
    plan = plan_tick(snapshot(["nid001", "nid002"]), cat, booted(), [], [bad, ok("nid002", U1)], cfg)
    assert plan.new_failures == {"nid001": f"{U1}: update.sh exited 3: disk full"}
    assert plan.reservation == ["nid001", "nid003"]
    assert plan.ledger.nodes["nid001"].state == NodeState.FAIL
    assert plan.release == ["nid002"]


def test_failure_budget_stops_new_nodes_taking_the_update() -> None:
    cat, cfg = catalog((U1, NODES, 0)), config(res_limit=4, max_failures=2)
    fails = [ApplyResult(node=n, codename=U1, ok=False, exit_code=1, at=1.0) for n in ("nid001", "nid002")]
    plan = plan_tick(snapshot(["nid001", "nid002", "nid003"]), cat, booted(), [], fails, cfg)
    assert U1 in plan.halted
    assert plan.reserve == [] and plan.start == []
    assert plan.reservation == ["nid001", "nid002"]  # nid003 had not started: given back
    assert "failure budget" in plan.ledger.nodes["nid004"].reason


def test_canary_widens_only_after_every_canary_node_succeeded() -> None:
    cat, cfg = catalog((U1, NODES, 2)), config(res_limit=8)
    p1 = plan_tick(snapshot(None), cat, booted(), [], [], cfg)
    assert p1.reserve == ["nid001", "nid002"]
    p2 = plan_tick(snapshot(p1.reservation), cat, p1.ledger, [], [ok("nid001", U1)], cfg)
    assert p2.reserve == []  # one canary still running
    p3 = plan_tick(snapshot(["nid002"]), cat, p2.ledger, [], [ok("nid002", U1)], cfg)
    assert p3.reserve == NODES[2:]


def test_a_gated_update_stops_after_its_canary_until_it_is_widened() -> None:
    gated = CatalogEntry(codename=U1, nodes=NODES, canary=2, approval="pending")
    cat, cfg = Catalog(entries=[gated]), config(res_limit=8)
    p1 = plan_tick(snapshot(None), cat, booted(), [], [], cfg)
    assert p1.reserve == ["nid001", "nid002"] and p1.awaiting_approval == {}
    p2 = plan_tick(snapshot(p1.reservation), cat, p1.ledger, [], [ok("nid001", U1), ok("nid002", U1)], cfg)
    assert p2.reserve == [] and p2.awaiting_approval == {U1: ["nid001", "nid002"]}
    assert "waiting for an operator's decision" in p2.ledger.nodes["nid003"].reason
    assert U1 not in p2.halted  # waiting is no failure: no halted event
    p3 = plan_tick(snapshot(p2.reservation), cat, p2.ledger, [], [], cfg)
    assert p3.reserve == [] and p3.reservation is None
    widened = Catalog(entries=[gated.model_copy(update={"approval": "widened"})])
    p4 = plan_tick(snapshot(p3.reservation), widened, p3.ledger, [], [], cfg)
    assert p4.reserve == NODES[2:] and p4.awaiting_approval == {}


def test_a_gated_update_whose_canary_failed_is_halted_not_awaiting() -> None:
    gated = CatalogEntry(codename=U1, nodes=NODES, canary=2, approval="pending")
    bad = ApplyResult(node="nid001", codename=U1, ok=False, exit_code=1, at=1.0)
    plan = plan_tick(snapshot(["nid001", "nid002"]), Catalog(entries=[gated]), booted(), [], [bad, ok("nid002", U1)],
                     config(res_limit=8, max_failures=5))  # fmt: skip
    assert "canary failed" in plan.halted[U1] and plan.awaiting_approval == {}


def test_failed_canary_halts_the_update() -> None:
    cat, cfg = catalog((U1, NODES, 2)), config(res_limit=8, max_failures=5)
    bad = ApplyResult(node="nid001", codename=U1, ok=False, exit_code=1, at=1.0)
    plan = plan_tick(snapshot(["nid001", "nid002"]), cat, booted(), [], [bad, ok("nid002", U1)], cfg)
    assert "canary failed" in plan.halted[U1]
    assert plan.reserve == []


def test_catalog_error_starts_nothing_new_but_running_updates_finish() -> None:
    cat = catalog((U1, NODES, 0))
    cat.error = "active-updates.list:3: hostlist: cannot parse 'nid[1-'"
    plan = plan_tick(snapshot(["nid001", "nid002"], applying=["nid001"]), cat, booted(), [], [], config())
    assert plan.reserve == [] and plan.start == []
    assert plan.reservation == ["nid001"]
    assert plan.notes and "active-updates.list:3" in plan.notes[0]


def test_retired_update_releases_nodes_that_had_not_started() -> None:
    plan = plan_tick(snapshot(["nid001", "nid002"], applying=["nid002"]), Catalog(), booted(), [], [], config())
    assert plan.release == ["nid001"]
    assert plan.reservation == ["nid002"]


def test_two_updates_are_applied_oldest_first() -> None:
    cat = catalog((U2, NODES, 0), (U1, NODES, 0))
    assert cat.pending_for("nid001", BOOT) == [U1, U2]
    plan = plan_tick(snapshot(["nid001"]), cat, booted(), [], [ok("nid001", U1)], config(res_limit=1))
    assert plan.start == ["nid001"]  # still needs U2
    assert plan.ledger.nodes["nid001"].level == U1


def test_a_boot_raises_the_level_but_leaves_a_fail_node_in_fail_until_an_operator_resolves_it() -> None:
    led = booted()
    led.nodes["nid001"] = NodeRecord(level=BOOT, state=NodeState.FAIL, failed_codename=U1, reason="x")
    boot = LevelReport(node="nid001", level="20260215000000", at=2.0, source="boot")
    cat = catalog((U1, ["nid001"], 0))
    plan = plan_tick(snapshot(["nid001"]), cat, led, [boot], [], config())
    rec = plan.ledger.nodes["nid001"]
    assert rec.state == NodeState.FAIL and rec.level == "20260215000000"
    assert plan.reservation == ["nid001"]
    rec.state, rec.failed_codename = NodeState.IDLE, None  # what `opsflow nu resolve` does
    after = plan_tick(snapshot(["nid001"]), cat, plan.ledger, [], [], config())
    assert after.release == ["nid001"] and after.reservation is None


def test_a_boot_report_read_again_keeps_an_operators_release() -> None:
    # The tick rereads report files for a few seconds (REREAD_MARGIN_NS): the same boot must not count twice.
    boot = LevelReport(node="nid001", level=BOOT, at=1.0, source="boot")
    led = Ledger(nodes={"nid001": NodeRecord(level=BOOT, skipped=[U1])})
    plan = plan_tick(snapshot(["nid001"]), catalog((U1, ["nid001"], 0)), led, [boot], [], config())
    assert plan.ledger.nodes["nid001"].skipped == [U1]
    assert plan.release == ["nid001"] and plan.reservation is None
    newer = LevelReport(node="nid001", level="20260115000000", at=2.0, source="boot")  # a real reboot
    again = plan_tick(snapshot(None), catalog((U1, ["nid001"], 0)), led, [newer], [], config())
    assert again.ledger.nodes["nid001"].skipped == [] and again.reserve == ["nid001"]


def test_unknown_level_nodes_are_left_alone() -> None:
    plan = plan_tick(snapshot(None), catalog((U1, NODES, 0)), Ledger(), [], [], config())
    assert plan.reservation is None


def test_lowered_limit_gives_back_unstarted_nodes_first() -> None:
    cat = catalog((U1, NODES, 0))
    plan = plan_tick(snapshot(NODES[:4], applying=["nid001"]), cat, booted(), [], [], config(res_limit=2))
    assert plan.reservation is not None and len(plan.reservation) == 2 and "nid001" in plan.reservation


# --- invariants over generated situations -----------------------------------------------------------------
codenames = st.sampled_from([U1, U2, "20260401000000"])
node_subsets = st.sets(st.sampled_from(NODES))


@st.composite
def situations(draw: st.DrawFn) -> tuple[ClusterSnapshot, Catalog, Ledger, list[ApplyResult], NodeUpdateConfig]:
    cfg = config(res_limit=draw(st.integers(1, 6)), max_failures=draw(st.integers(1, 4)))
    entries = [(c, sorted(draw(node_subsets)) or ["nid001"], draw(st.integers(0, 3))) for c in draw(st.sets(codenames))]
    cat = catalog(*entries)
    if draw(st.booleans()) and draw(st.booleans()):
        cat.error = "active-updates.list:1: codename: bad"
    led = Ledger()
    for n in NODES:
        level = draw(st.one_of(st.none(), st.sampled_from([BOOT, U1, U2])))
        failed = draw(st.one_of(st.none(), codenames))
        state = NodeState.FAIL if failed and draw(st.booleans()) else NodeState.IDLE
        led.nodes[n] = NodeRecord(level=level, state=state, failed_codename=failed if state == NodeState.FAIL else None)
    reservation = sorted(draw(st.sets(st.sampled_from(NODES), max_size=cfg.res_limit)))
    busy = draw(node_subsets)
    applying = sorted(draw(st.sets(st.sampled_from(reservation))) if reservation else [])
    down = draw(node_subsets)
    nodes = [
        SlurmNodeView(name=n, state="down" if n in down else ("alloc" if n in busy else "idle"), has_job=n in busy)
        for n in NODES
    ]
    snap = ClusterSnapshot(nodes=nodes, reservation=reservation or None, applying=applying)
    results = [
        ApplyResult(node=n, codename=draw(codenames), ok=draw(st.booleans()), exit_code=1, at=1.0)
        for n in draw(st.sets(st.sampled_from(NODES), max_size=3))
    ]
    return snap, cat, led, results, cfg


def check_invariants(snap: ClusterSnapshot, cat: Catalog, plan: Plan, cfg: NodeUpdateConfig) -> None:
    out = set(plan.reservation or [])
    before = set(snap.reservation or [])
    by_name = {n.name: n for n in snap.nodes}
    assert len(out) <= cfg.res_limit, "F6: reservation over res_limit"
    for name in plan.reserve:  # idle nodes, or busy ones (their update starts only once the job ended: F2)
        node = by_name[name]
        assert name not in before and (usable(node) or (node.has_job and node.state != "down"))
    for name in plan.start:
        assert name in before and name in out and usable(by_name[name]) and name not in snap.applying
    for name, rec in plan.ledger.nodes.items():
        if rec.state == NodeState.FAIL and name in before:
            assert name in out, "a FAIL node left the reservation"
        if rec.state == NodeState.FAIL and name not in out:  # sticky FAIL: only when the slots are all FAIL/UPDATING
            assert len(out) == cfg.res_limit and all(
                plan.ledger.nodes[n].state in (NodeState.FAIL, NodeState.UPDATING) for n in out
            ), "a FAIL node was left outside the reservation with a slot free"
    for name in snap.applying:
        if name in before:
            assert name in out, "a node left the reservation while updating"
    if cat.error:
        assert plan.reserve == [] and plan.start == []
    for name in [*plan.reserve, *plan.start]:
        rec = plan.ledger.nodes[name]
        pending = cat.pending_for(name, rec.level, rec.skipped)
        assert pending and pending[0] not in plan.halted
    assert plan.reservation is None or plan.reservation == sorted(out)


@settings(max_examples=400, deadline=None)
@given(situations())
def test_invariants_hold_for_any_snapshot(
    case: tuple[ClusterSnapshot, Catalog, Ledger, list[ApplyResult], NodeUpdateConfig],
) -> None:
    snap, cat, led, results, cfg = case
    given_ledger = led.model_copy(deep=True)
    plan = plan_tick(snap, cat, led, [], results, cfg)
    check_invariants(snap, cat, plan, cfg)
    assert led == given_ledger, "the planner changed the ledger it was given (it must stay pure)"
    assert set(plan.ledger.nodes) >= {n.name for n in snap.nodes}, "a node the tick saw has no record"
    # Level-triggered: planning again from the same observation and the resulting ledger changes nothing more.
    again = plan_tick(snap, cat, plan.ledger, [], results, cfg)
    assert again.reservation == plan.reservation and again.start == plan.start


@settings(max_examples=200, deadline=None)
@given(situations(), st.sets(st.sampled_from(NODES)))
def test_rollout_progress_counts_what_pending_for_says(
    case: tuple[ClusterSnapshot, Catalog, Ledger, list[ApplyResult], NodeUpdateConfig], skipping: set[str]
) -> None:
    _, cat, led, _, _ = case
    for n in skipping:  # some nodes were released from an update by an operator
        led.nodes[n].skipped = [e.codename for e in cat.entries[:1]]
    covered = {n for e in cat.entries for n in e.nodes}
    updated = [
        n
        for n in covered
        if led.nodes[n].level is not None and not cat.pending_for(n, led.nodes[n].level, led.nodes[n].skipped)
    ]
    failed = [n for n in covered if n not in updated and led.nodes[n].state == NodeState.FAIL]
    assert rollout_progress(Plan(reservation=None, ledger=led), cat) == (len(updated), len(failed), len(covered))


# --- operator holds and manual edits of the reservation ----------------------------------------------------
def held(keep: str, *nodes: str) -> Ledger:
    from node_update.models import Hold

    led = booted()
    for n in nodes:
        led.nodes[n].hold = Hold(keep=keep, by="alice", reason="bad DIMM", at=1.0)
    return led


def test_a_node_held_in_stays_reserved_counts_against_the_limit_and_starts_nothing() -> None:
    cat, cfg = catalog((U1, NODES, 0)), config(res_limit=2)
    plan = plan_tick(snapshot(None), cat, held("in", "nid005"), [], [], cfg)
    assert plan.reservation == ["nid001", "nid005"]  # one slot left for the rollout
    assert plan.ledger.nodes["nid005"].reason == "held in by alice: bad DIMM"
    nxt = plan_tick(snapshot(plan.reservation), cat, plan.ledger, [], [], cfg)
    assert nxt.start == ["nid001"] and "nid005" in (nxt.reservation or [])


def test_a_node_held_out_leaves_the_reservation_and_is_never_reserved() -> None:
    cat = catalog((U1, NODES, 0))
    plan = plan_tick(snapshot(["nid001"]), cat, held("out", "nid001"), [], [], config(res_limit=2))
    assert plan.release == ["nid001"] and plan.reservation == ["nid002", "nid003"]
    assert plan.ledger.nodes["nid001"].reason == "held out by alice: bad DIMM"
    # An update running on it finishes first.
    running = plan_tick(snapshot(["nid001"], applying=["nid001"]), cat, held("out", "nid001"), [], [], config())
    assert "nid001" in (running.reservation or [])


def test_a_reservation_edited_by_hand_is_reported_and_one_a_killed_tick_set_is_not() -> None:
    cat, cfg = catalog((U1, NODES, 0)), config(res_limit=2)
    first = plan_tick(snapshot(None), cat, booted(), [], [], cfg)
    assert first.manual_edit == "" and first.ledger.last_reservation == ["nid001", "nid002"]
    edited = plan_tick(snapshot(["nid001", "nid007"]), cat, first.ledger, [], [], cfg)
    assert edited.manual_edit == "reservation edited outside the orchestrator: added nid007, removed nid002"
    assert any("opsflow nu hold" in note for note in edited.notes)
    # A tick that set ["nid001", "nid003"] and died before saving its ledger left that intent behind.
    killed = plan_tick(snapshot(["nid001", "nid003"]), cat, first.ledger, [], [], cfg, intended=["nid001", "nid003"])
    assert killed.manual_edit == ""
