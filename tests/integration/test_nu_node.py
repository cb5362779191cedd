"""The file side of Node Update on real files and real update.sh processes: publish/retire, spool, node hooks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from node_update import catalog, node, spool
from node_update.catalog import CatalogError, catalog_path, load_catalog, publish, retire
from node_update.models import ApplyResult, Ledger, LevelReport, NodeRecord

U1 = "20260101000000"
U2 = "20260201000000"
U3 = "20260301000000"
BOOT = datetime(2025, 12, 1)  # before U1: a node booted then needs U1, U2, U3
ROOT_LINE = "#!/bin/sh\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPSFLOW_NU_LOCAL_DIR", str(tmp_path / "nodes" / "{node}"))
    monkeypatch.setenv("NU_TRACE", str(tmp_path / "trace"))
    return tmp_path / "root"


def make_bundle(where: Path, body: str = "exit 0\n", mode: int = 0o755) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    script = where / "update.sh"
    script.write_text(ROOT_LINE + body)
    script.chmod(mode)
    (where / "motd").write_text("extra files are allowed\n")
    return where


#: Appends what the script saw to $NU_TRACE: its inputs, its working directory, and the node's level right now.
TRACE = 'echo "$CODENAME $NODE $BUNDLE_DIR $(pwd) $(cat "$LOCAL_DIR/local.version")" >> "$NU_TRACE"\n'


def publish_with(root: Path, tmp: Path, codename: str, nodes: str, body: str = TRACE, canary: int = 0) -> Path:
    publish(root, codename, nodes, canary=canary, bundle=make_bundle(tmp / f"src-{codename}", body))
    return catalog.bundle_dir(root, codename)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root with its bytes and mode, except the lock file and its directory (changed by design)."""
    out: dict[str, tuple[bytes, int]] = {}
    for path in sorted(root.rglob("*")):
        if path in (spool.lock_path(root), spool.lock_path(root).parent):
            continue
        if path.is_file():
            out[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode)
        elif path.is_dir():
            out[str(path.relative_to(root)) + "/"] = (b"", 0)
    return out


def trace(tmp: Path) -> list[list[str]]:
    path = tmp / "trace"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


# --- publish / retire -------------------------------------------------------------------------------------------


def test_publish_copies_bundle_and_appends_line(root: Path, tmp_path: Path) -> None:
    entry = publish(root, U1, "nid[001-003]", canary=1, bundle=make_bundle(tmp_path / "b1"))
    assert (entry.codename, entry.nodes, entry.canary, entry.line) == (U1, ["nid001", "nid002", "nid003"], 1, 1)
    copied = root / "updates" / U1
    assert os.access(copied / "update.sh", os.X_OK)
    assert (copied / "motd").read_text() == "extra files are allowed\n"
    assert not [p for p in (root / "updates").iterdir() if p.name.startswith(".")]  # no temporary dir left
    publish(root, U2, "nid[002,001]", bundle=make_bundle(tmp_path / "b2"))
    assert catalog_path(root).read_text() == f"{U1} nid[001-003] canary=1\n{U2} nid[001-002]\n"
    assert [(e.codename, e.line) for e in load_catalog(root).entries] == [(U1, 1), (U2, 2)]


def test_publish_without_bundle_uses_the_one_in_place(root: Path) -> None:
    make_bundle(root / "updates" / U1)
    publish(root, U1, "nid001")
    assert [e.codename for e in load_catalog(root).entries] == [U1]


def test_publish_repeated_after_a_crash_with_same_bundle(root: Path, tmp_path: Path) -> None:
    src = make_bundle(tmp_path / "b")
    catalog._install_bundle(src, root / "updates" / U1)  # the copy happened, the line was never appended
    publish(root, U1, "nid001", bundle=src)
    assert catalog_path(root).read_text() == f"{U1} nid001\n"


def test_publish_keeps_existing_bytes_and_adds_missing_newline(root: Path, tmp_path: Path) -> None:
    root.mkdir(parents=True)
    catalog_path(root).write_bytes(b"# ops team\n\n" + f"{U1} nid001  # note".encode())
    make_bundle(root / "updates" / U1)
    publish(root, U2, "nid002", bundle=make_bundle(tmp_path / "b"))
    assert catalog_path(root).read_bytes() == f"# ops team\n\n{U1} nid001  # note\n{U2} nid002\n".encode()


Setup = Callable[[Path, Path], dict[str, object]]


def _published(root: Path, tmp: Path) -> None:
    publish(root, U1, "nid001", bundle=make_bundle(tmp / "first"))


def _case_bad_codename(root: Path, tmp: Path) -> dict[str, object]:
    return {"codename": "20261301000000", "bundle": make_bundle(tmp / "b")}


def _case_bad_hostlist(root: Path, tmp: Path) -> dict[str, object]:
    return {"nodes": "nid[001-", "bundle": make_bundle(tmp / "b")}


def _case_empty_hostlist(root: Path, tmp: Path) -> dict[str, object]:
    return {"nodes": "", "bundle": make_bundle(tmp / "b")}


def _case_unsafe_node(root: Path, tmp: Path) -> dict[str, object]:
    return {"nodes": "../x", "bundle": make_bundle(tmp / "b")}


def _case_negative_canary(root: Path, tmp: Path) -> dict[str, object]:
    return {"canary": -1, "bundle": make_bundle(tmp / "b")}


def _case_twice(root: Path, tmp: Path) -> dict[str, object]:
    _published(root, tmp)
    return {"codename": U1, "bundle": make_bundle(tmp / "b")}


def _case_catalog_error(root: Path, tmp: Path) -> dict[str, object]:
    _published(root, tmp)
    with open(catalog_path(root), "a") as fh:
        fh.write("garbage line\n")
    return {"bundle": make_bundle(tmp / "b")}


def _case_no_script(root: Path, tmp: Path) -> dict[str, object]:
    src = make_bundle(tmp / "b")
    (src / "update.sh").unlink()
    return {"bundle": src}


def _case_not_executable(root: Path, tmp: Path) -> dict[str, object]:
    return {"bundle": make_bundle(tmp / "b", mode=0o644)}


def _case_script_is_dir(root: Path, tmp: Path) -> dict[str, object]:
    src = tmp / "b"
    (src / "update.sh").mkdir(parents=True)
    return {"bundle": src}


def _case_bundle_not_dir(root: Path, tmp: Path) -> dict[str, object]:
    (tmp / "file").write_text("x")
    return {"bundle": tmp / "file"}


def _case_different_bundle_exists(root: Path, tmp: Path) -> dict[str, object]:
    _published(root, tmp)
    retire(root, U1)  # the bundle stays in updates/
    return {"codename": U1, "bundle": make_bundle(tmp / "b", body="echo other\n")}


def _case_no_bundle_anywhere(root: Path, tmp: Path) -> dict[str, object]:
    return {"bundle": None}


def _case_in_place_not_executable(root: Path, tmp: Path) -> dict[str, object]:
    make_bundle(root / "updates" / U2, mode=0o600)
    return {"bundle": None}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (_case_bad_codename, "invalid codename '20261301000000': not a real date-time: month must be in 1..12"),
        (_case_bad_hostlist, "--nodes: 'nid[001-' is not a Slurm hostlist: unbalanced brackets"),
        (_case_empty_hostlist, "--nodes: '' names no node"),
        (_case_unsafe_node, "--nodes: node name '../x': only letters, digits, '.', '_' and '-' are allowed"),
        (_case_negative_canary, "--canary: -1 is not a whole number >= 0"),
        (_case_twice, f"{U1}: published twice (line 1 of {{root}}/active-updates.list)"),
        (
            _case_catalog_error,
            "refusing to publish while the catalog has an error: "
            "{root}/active-updates.list:2: codename: 'garbage': expected 14 digits YYYYmmddHHMMSS",
        ),
        (_case_no_script, "{tmp}/b/update.sh: missing (a bundle needs an executable update.sh)"),
        (_case_not_executable, "{tmp}/b/update.sh: not executable (chmod +x it)"),
        (_case_script_is_dir, "{tmp}/b/update.sh: not a regular file"),
        (_case_bundle_not_dir, "{tmp}/file: bundle is not a directory"),
        (
            _case_different_bundle_exists,
            f"{{root}}/updates/{U1}: already exists with different content (a codename names one bundle)",
        ),
        (
            _case_no_bundle_anywhere,
            f"{{root}}/updates/{U2}/update.sh: missing (a bundle needs an executable update.sh)",
        ),
        (_case_in_place_not_executable, f"{{root}}/updates/{U2}/update.sh: not executable (chmod +x it)"),
    ],
)
def test_publish_refusals_change_nothing(root: Path, tmp_path: Path, setup: Setup, message: str) -> None:
    args: dict[str, object] = {"codename": U2, "nodes": "nid[001-002]", "canary": 0}
    args.update(setup(root, tmp_path))
    before = snapshot(root)
    with pytest.raises(CatalogError) as err:
        publish(root, **args)  # type: ignore[arg-type]
    assert str(err.value) == message.format(root=root, tmp=tmp_path)
    assert snapshot(root) == before


def test_retire_removes_only_its_line(root: Path, tmp_path: Path) -> None:
    root.mkdir(parents=True)
    text = f"# header\n{U1} nid001   # keep me\n\n{U2} nid[001-002] canary=1 # go\n  # trailing comment\n{U3} nid003"
    catalog_path(root).write_text(text)
    entry = retire(root, U2)
    assert (entry.codename, entry.nodes, entry.canary, entry.line) == (U2, ["nid001", "nid002"], 1, 4)
    assert catalog_path(root).read_text() == f"# header\n{U1} nid001   # keep me\n\n  # trailing comment\n{U3} nid003"
    retire(root, U3)
    retire(root, U1)
    assert catalog_path(root).read_text() == "# header\n\n  # trailing comment\n"
    assert load_catalog(root).entries == []


@pytest.mark.parametrize(
    ("codename", "message"),
    [
        (U3, f"{U3}: not in {{root}}/active-updates.list (unknown codename)"),
        ("2026", "invalid codename '2026': expected 14 digits YYYYmmddHHMMSS"),
    ],
)
def test_retire_refusals_change_nothing(root: Path, tmp_path: Path, codename: str, message: str) -> None:
    publish_with(root, tmp_path, U1, "nid001")
    before = snapshot(root)
    with pytest.raises(CatalogError) as err:
        retire(root, codename)
    assert str(err.value) == message.format(root=root)
    assert snapshot(root) == before


def test_concurrent_publishes_all_land(root: Path, tmp_path: Path) -> None:
    codenames = [f"2026010{i}000000" for i in range(1, 7)]
    bundles = {c: make_bundle(tmp_path / c) for c in codenames}
    errors: list[BaseException] = []

    def run(codename: str) -> None:
        try:
            publish(root, codename, "nid[001-004]", bundle=bundles[codename])
        except BaseException as exc:
            errors.append(exc)

    with spool.root_lock(root):  # every publisher queues on the lock, then they race for it
        threads = [threading.Thread(target=run, args=(c,)) for c in codenames]
        for t in threads:
            t.start()
        assert not catalog_path(root).exists()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    cat = load_catalog(root)
    assert cat.error is None
    assert sorted(e.codename for e in cat.entries) == codenames


def test_lock_timeout_names_the_holder_and_changes_nothing(root: Path, tmp_path: Path) -> None:
    src = make_bundle(tmp_path / "b")
    with spool.root_lock(root):
        before = snapshot(root)
        caught: list[BaseException] = []

        def run() -> None:
            try:
                publish(root, U1, "nid001", bundle=src, lock_timeout=0.2)
            except BaseException as exc:
                caught.append(exc)

        t = threading.Thread(target=run)
        t.start()
        t.join(timeout=60)
        assert snapshot(root) == before
    (exc,) = caught
    assert isinstance(exc, spool.LockTimeout)
    assert f"pid {os.getpid()}" in str(exc)


# --- node side --------------------------------------------------------------------------------------------------


def test_apply_runs_updates_in_codename_order_with_env(root: Path, tmp_path: Path) -> None:
    b2 = publish_with(root, tmp_path, U2, "nid[001-002]")
    b1 = publish_with(root, tmp_path, U1, "nid001")
    node.boot(root, "nid001", now=BOOT)
    results = node.apply(root, "nid001")
    assert [(r.codename, r.ok, r.exit_code) for r in results] == [(U1, True, 0), (U2, True, 0)]
    boot_level = "20251201000000"
    # Each script saw CODENAME, NODE, BUNDLE_DIR, ran in its bundle, and saw the level the previous one left.
    assert trace(tmp_path) == [
        [U1, "nid001", str(b1), str(b1), boot_level],
        [U2, "nid001", str(b2), str(b2), U1],
    ]
    assert node.read_level("nid001") == U2
    read, problems = spool.read_results(root)
    assert problems == []
    assert [(r.node, r.codename, r.ok) for r in read] == [("nid001", U1, True), ("nid001", U2, True)]
    assert spool.log_path(root, "nid001", U1).exists()
    assert node.apply(root, "nid001") == []  # up to date now: nothing runs again
    assert len(trace(tmp_path)) == 2


def test_retire_during_a_chain_starts_no_more(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NU_ROOT", str(root))
    cat = "$NU_ROOT/active-updates.list"
    retire_u2 = TRACE + f'grep -v "^{U2}" "{cat}" > "$NU_ROOT/x"; mv "$NU_ROOT/x" "{cat}"\n'  # the operator, meanwhile
    publish_with(root, tmp_path, U1, "nid001", body=retire_u2)
    publish_with(root, tmp_path, U2, "nid001")
    publish_with(root, tmp_path, U3, "nid001")
    node.boot(root, "nid001", now=BOOT)
    assert [r.codename for r in node.apply(root, "nid001")] == [U1, U3]
    assert [row[0] for row in trace(tmp_path)] == [U1, U3]
    assert node.read_level("nid001") == U3


def test_failing_update_stops_the_chain(root: Path, tmp_path: Path) -> None:
    publish_with(root, tmp_path, U1, "nid001")
    fail = TRACE + 'i=1; while [ $i -le 25 ]; do echo "line $i"; i=$((i+1)); done; echo oops >&2; exit 3\n'
    publish_with(root, tmp_path, U2, "nid001", body=fail)
    publish_with(root, tmp_path, U3, "nid001")
    node.boot(root, "nid001", now=BOOT)
    results = node.apply(root, "nid001")
    assert [(r.codename, r.ok, r.exit_code) for r in results] == [(U1, True, 0), (U2, False, 3)]
    tail = results[1].log_tail.splitlines()
    assert len(tail) == 20 and tail[0] == "line 7" and tail[-1] == "oops"
    assert node.read_level("nid001") == U1
    assert [row[0] for row in trace(tmp_path)] == [U1, U2]  # U3 never ran
    read, _ = spool.read_results(root)
    assert [(r.codename, r.ok) for r in read] == [(U1, True), (U2, False)]
    assert "line 1\n" in spool.log_path(root, "nid001", U2).read_text()  # the full log is kept


@pytest.mark.parametrize(("damage", "code", "why"), [("unlink", 127, "missing"), ("chmod", 126, "not executable")])
def test_unrunnable_script_is_a_failure_result(root: Path, tmp_path: Path, damage: str, code: int, why: str) -> None:
    bundle = publish_with(root, tmp_path, U1, "nid001")
    if damage == "unlink":
        (bundle / "update.sh").unlink()
    else:
        (bundle / "update.sh").chmod(0o644)
    node.boot(root, "nid001", now=BOOT)
    (result,) = node.apply(root, "nid001")
    assert (result.ok, result.exit_code) == (False, code)
    assert why in result.log_tail and str(bundle / "update.sh") in result.log_tail
    assert node.read_level("nid001") == "20251201000000"


def test_timeout_kills_the_process_group(root: Path, tmp_path: Path) -> None:
    body = 'sleep 300 & echo $! > "$NU_TRACE.child"; echo started; wait\n'
    publish_with(root, tmp_path, U1, "nid001", body=body)
    node.boot(root, "nid001", now=BOOT)
    (result,) = node.apply(root, "nid001", timeout=0.5, kill_grace=2)
    assert (result.ok, result.exit_code) == (False, 124)
    assert "started" in result.log_tail and "timed out" in result.log_tail
    child = int((tmp_path / "trace.child").read_text())
    try:
        state = Path(f"/proc/{child}/stat").read_text().split()[2]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z")  # killed (at most a zombie waiting for its reaper)


def test_boot_after_publish_counts_as_updated(root: Path, tmp_path: Path) -> None:
    publish_with(root, tmp_path, U1, "nid001")
    report = node.boot(root, "nid001", now=datetime(2026, 1, 15))
    assert report == LevelReport(node="nid001", level="20260115000000", at=report.at, source="boot")
    assert spool.read_reports(root) == ([report], [])
    assert node.check(root, "nid001") == []
    assert node.apply(root, "nid001") == []
    assert trace(tmp_path) == []


def test_check_reports_only_when_behind(root: Path, tmp_path: Path) -> None:
    node.boot(root, "nid001", now=datetime(2026, 1, 15))
    spool.consume_reports(root, spool.read_reports(root)[0])
    publish_with(root, tmp_path, U1, "nid001")  # older than the boot: not needed
    assert node.check(root, "nid001") == []
    assert spool.read_reports(root) == ([], [])
    publish_with(root, tmp_path, U2, "nid[001-002]")
    publish_with(root, tmp_path, U3, "nid002")  # not for this node
    assert node.check(root, "nid001") == [U2]
    (report,), problems = spool.read_reports(root)
    assert problems == []
    assert (report.node, report.level, report.source) == ("nid001", "20260115000000", "epilog")
    assert node.check(root, "nid001", source="check") == [U2]  # overwrites its one file
    (again,), _ = spool.read_reports(root)
    assert again.source == "check"


def test_check_never_raises_on_broken_input(root: Path, tmp_path: Path) -> None:
    publish_with(root, tmp_path, U1, "nid001")
    assert node.check(root, "nid001") == []  # no local.version: level unknown, nothing reported
    node.write_level("nid001", "20251201000000")
    with open(catalog_path(root), "a") as fh:
        fh.write("20260401000000 nid[\n")
    assert node.check(root, "nid001") == []  # broken catalog: nothing
    assert node.apply(root, "nid001") == []
    catalog_path(root).write_text(f"{U1} nid001\n")
    node.level_path("nid001").write_text("yesterday\n")
    assert node.check(root, "nid001") == []  # damaged level: nothing
    assert node.check(tmp_path / "no-such-root", "nid001") == []
    assert spool.read_reports(root) == ([], [])
    with pytest.raises(node.NodeError, match=r"local\.version: invalid codename 'yesterday'"):
        node.read_level("nid001")


def test_apply_with_unknown_level_fails_when_the_tick_expects_work(root: Path, tmp_path: Path) -> None:
    publish_with(root, tmp_path, U1, "nid001")
    assert node.apply(root, "nid001") == []  # the tick knows nothing either: nothing to do
    spool.save_ledger(root, Ledger(nodes={"nid001": NodeRecord(level="20251201000000")}))
    (result,) = node.apply(root, "nid001")
    assert (result.codename, result.ok, result.exit_code) == (U1, False, 2)
    assert "local.version: missing" in result.log_tail
    assert trace(tmp_path) == []


def test_apply_skips_what_an_operator_released(root: Path, tmp_path: Path) -> None:
    publish_with(root, tmp_path, U1, "nid001")
    publish_with(root, tmp_path, U2, "nid001")
    node.boot(root, "nid001", now=BOOT)
    spool.save_ledger(root, Ledger(nodes={"nid001": NodeRecord(skipped=[U1])}))
    assert [r.codename for r in node.apply(root, "nid001")] == [U2]
    assert [row[0] for row in trace(tmp_path)] == [U2]


def test_apply_with_nothing_pending_reports_its_level(root: Path, tmp_path: Path) -> None:
    node.boot(root, "nid001", now=datetime(2026, 6, 1))
    spool.consume_reports(root, spool.read_reports(root)[0])
    assert node.apply(root, "nid001") == []
    (report,), _ = spool.read_reports(root)
    assert (report.level, report.source) == ("20260601000000", "apply")


def test_unsafe_node_names_are_refused_everywhere(root: Path, tmp_path: Path) -> None:
    publish_with(root, tmp_path, U1, "nid001")
    before = snapshot(tmp_path)
    bad = "../x"
    for call in (
        lambda: node.local_dir(bad),
        lambda: node.boot(root, bad),
        lambda: node.check(root, bad),
        lambda: node.apply(root, bad),
        lambda: spool.write_report(root, LevelReport(node=bad, level=U1, at=0)),
        lambda: spool.write_result(root, ApplyResult(node="nid001", codename="../../x", ok=True, exit_code=0, at=0)),
        lambda: spool.log_path(root, "nid001", "a/b"),
    ):
        with pytest.raises(spool.UnsafeNameError):
            call()
    assert snapshot(tmp_path) == before


# --- spool ------------------------------------------------------------------------------------------------------


def test_bad_spool_files_are_skipped_and_named(root: Path) -> None:
    good = LevelReport(node="nid001", level=U1, at=1.0)
    spool.write_report(root, good)
    reports = spool.reports_dir(root)
    (reports / "nid002.json").write_text("{not json")
    (reports / "nid003.json").write_text(good.model_dump_json())  # says nid001
    (reports / ".nid004.json.tmp").write_text("half written")
    found, problems = spool.read_reports(root)
    assert found == [good]
    assert len(problems) == 2
    assert problems[0].startswith(f"{reports}/nid002.json: unreadable report:")
    assert problems[1] == f"{reports}/nid003.json: report names node 'nid001', not the file's node"

    result = ApplyResult(node="nid001", codename=U1, ok=True, exit_code=0, at=2.0)
    spool.write_result(root, result, "full log\n")
    (spool.results_dir(root) / f"nid002.{U1}.json").write_text('{"node": "nid002"}')
    found_results, problems = spool.read_results(root)
    assert found_results == [result]
    assert len(problems) == 1 and "unreadable result" in problems[0]
    assert spool.log_path(root, "nid001", U1).read_text() == "full log\n"


def test_consume_deletes_only_what_was_read(root: Path) -> None:
    old = LevelReport(node="nid001", level=U1, at=1.0)
    spool.write_report(root, old)
    spool.write_report(root, LevelReport(node="nid002", level=U1, at=1.0))
    seen, _ = spool.read_reports(root)
    newer = LevelReport(node="nid002", level=U2, at=2.0)
    spool.write_report(root, newer)  # the node wrote again after the tick read
    spool.consume_reports(root, seen)
    assert spool.read_reports(root) == ([newer], [])

    result = ApplyResult(node="nid001", codename=U1, ok=False, exit_code=1, at=1.0)
    spool.write_result(root, result)
    spool.consume_results(root, spool.read_results(root)[0])
    assert spool.read_results(root) == ([], [])
    spool.consume_results(root, [result])  # already gone: fine


def test_ledger_round_trip_and_damage(root: Path) -> None:
    assert spool.load_ledger(root) == Ledger()
    ledger = Ledger(nodes={"nid001": NodeRecord(level=U1, skipped=[U2])})
    spool.save_ledger(root, ledger)
    assert spool.load_ledger(root) == ledger
    spool.ledger_path(root).write_text('{"nodes": {"nid001": {"state": "MAYBE"}}}')
    with pytest.raises(spool.SpoolError, match=r"nodes\.json: damaged ledger: nodes\.nid001\.state"):
        spool.load_ledger(root)


# --- health checks before DONE (the seed's NLM checks) -------------------------------------------------------------
def test_a_failing_check_sh_makes_the_update_fail_with_its_output_and_keeps_the_old_level(
    root: Path, tmp_path: Path
) -> None:
    src = make_bundle(tmp_path / "src-check")
    (src / "check.sh").write_text(ROOT_LINE + 'echo "gpu0: ECC errors on $NODE" >&2\nexit 4\n')
    (src / "check.sh").chmod(0o755)
    publish(root, U1, "nid001", bundle=src)
    node.boot(root, "nid001", now=BOOT)
    [result] = node.apply(root, "nid001")
    assert not result.ok and result.exit_code == 4 and result.step == "check.sh"
    assert "gpu0: ECC errors on nid001" in result.log_tail
    assert node.read_level("nid001") == "20251201000000"  # local.version untouched: not DONE


def test_the_site_check_command_runs_after_check_sh_as_an_argument_list(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_bundle(tmp_path / "src-site")
    (src / "check.sh").write_text(ROOT_LINE + 'echo bundle-check >> "$NU_TRACE"\n')
    (src / "check.sh").chmod(0o755)
    site = tmp_path / "site check.sh"  # a space: it must travel as one argument
    site.write_text(ROOT_LINE + 'echo "site-check $1 $CODENAME" >> "$NU_TRACE"\ntest "$1" = "--quick; rm -rf /"\n')
    site.chmod(0o755)
    monkeypatch.setenv("OPSFLOW_NU_CHECK_COMMAND", f"'{site}' '--quick; rm -rf /'")
    publish(root, U1, "nid001", bundle=src)
    node.boot(root, "nid001", now=BOOT)
    [result] = node.apply(root, "nid001")
    assert result.ok, result.log_tail
    trace = Path(os.environ["NU_TRACE"]).read_text().splitlines()
    assert trace == ["bundle-check", f"site-check --quick; rm -rf / {U1}"]
    assert node.read_level("nid001") == U1
    monkeypatch.setenv("OPSFLOW_NU_CHECK_COMMAND", f"'{site}' --full")
    publish_with(root, tmp_path, U2, "nid001", body="exit 0\n")
    [failed] = node.apply(root, "nid001")
    assert not failed.ok and failed.step == "site check" and failed.exit_code == 1
    assert node.read_level("nid001") == U1


# --- operator holds (the seed's "specific API to manipulate the reservation") -----------------------------------
def test_hold_and_unhold_go_through_the_ledger_and_refuse_bad_input(root: Path) -> None:
    from node_update.errors import NodeUpdateInputError
    from node_update.operator import NotHeldError, UnknownNodeError, hold_node, node_statuses, unhold_node

    spool.save_ledger(root, Ledger(nodes={"nid001": NodeRecord(level=U1)}))
    with pytest.raises(UnknownNodeError, match="nid009"):
        hold_node(root, "nid009", "in", "x")
    with pytest.raises(NodeUpdateInputError, match="why"):
        hold_node(root, "nid001", "in", "  ")
    row = hold_node(root, "nid001", "out", "long benchmark run", by="alice")
    assert row.hold == "out by alice: long benchmark run"
    assert [s.hold for s in node_statuses(spool.load_ledger(root))] == ["out by alice: long benchmark run"]
    unhold_node(root, "nid001")
    assert spool.load_ledger(root).nodes["nid001"].hold is None
    with pytest.raises(NotHeldError):
        unhold_node(root, "nid001")
