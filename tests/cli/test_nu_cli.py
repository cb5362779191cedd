"""`opsflow nu …`: each command's error path is one line and the exit code it stands for; the happy path of the
operator commands against a fake Slurm on PATH; the node-side commands keep their argument lists.

Every test runs against a temporary root (``OPSFLOW_NU_ROOT``) and home (``OPSFLOW_HOME``) with no Prefect setting,
so it needs neither a server nor Slurm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node_update import node as node_side
from node_update import spool
from node_update.models import Ledger, NodeRecord, NodeState
from opsflow.cli import app

ROOT = Path(__file__).resolve().parents[2]
U1 = "20261201120000"
#: Answers of an idle two-node cluster with no reservation yet (the formats of node_update/slurm.py).
FAKE_SLURM = {
    "sinfo": "#!/bin/sh\nprintf 'nid001|idle\\nnid002|idle\\n'\n",
    "scontrol": "#!/bin/sh\necho 'Reservation node_update not found'\nexit 1\n",
    "squeue": "#!/bin/sh\nexit 0\n",
}


@pytest.fixture
def nu_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary root and home, no Prefect or Slurm setting inherited; returns the root."""
    for var in list(os.environ):
        if var.startswith(("PREFECT_", "OPSFLOW_", "SLURM")):
            monkeypatch.delenv(var)
    root = tmp_path / "root"
    monkeypatch.setenv("OPSFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPSFLOW_NU_ROOT", str(root))
    monkeypatch.setenv("OPSFLOW_NU_LOCAL_DIR", str(tmp_path / "nodes" / "{node}"))
    return root


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sinfo``, ``scontrol`` and ``squeue`` on PATH that answer like an idle two-node cluster."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in FAKE_SLURM.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def bundle(tmp_path: Path, script: str = "exit 0\n") -> Path:
    path = tmp_path / f"bundle-{len(list(tmp_path.glob('bundle-*')))}"
    path.mkdir()
    (path / "update.sh").write_text("#!/bin/sh\n" + script)
    (path / "update.sh").chmod(0o755)
    return path


def nu(*args: str) -> tuple[int, str, str]:
    """Run ``opsflow nu ARGS`` in-process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, ["nu", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(result: tuple[int, str, str], expected_code: int, *words: str) -> str:
    """``result`` (of :func:`nu`) failed with ``expected_code`` and one ``error:`` line holding every word."""
    code, _, stderr = result
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == expected_code, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --- error paths ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["status"], ["list"], ["tick", "--dry-run"], ["retire", U1]])
def test_a_bad_settings_value_is_one_line_naming_the_variable(
    command: list[str], nu_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSFLOW_NU_RES_LIMIT", "abc")
    assert_one_line_error(nu(*command), 2, "OPSFLOW_NU_RES_LIMIT='abc'", "integer")


def test_a_res_limit_below_one_is_refused(nu_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSFLOW_NU_RES_LIMIT", "0")
    assert_one_line_error(nu("status"), 2, "OPSFLOW_NU_RES_LIMIT='0'")


def test_retire_of_an_unknown_codename_says_so(nu_env: Path, tmp_path: Path) -> None:
    assert nu("publish", U1, "--nodes", "nid001", "--bundle", str(bundle(tmp_path)))[0] == 0
    assert_one_line_error(nu("retire", "20261201120001"), 2, "20261201120001", "unknown codename")


def test_retire_of_a_bad_codename_says_why(nu_env: Path) -> None:
    assert_one_line_error(nu("retire", "2026"), 2, "invalid codename '2026'")


def test_resolve_of_an_unknown_node_says_so(nu_env: Path) -> None:
    assert_one_line_error(nu("resolve", "nid009", "--retry"), 2, "nid009", "unknown")


def test_resolve_of_a_node_not_in_fail_says_its_state(nu_env: Path) -> None:
    spool.save_ledger(nu_env, Ledger(nodes={"nid001": NodeRecord(level=U1, state=NodeState.DONE)}))
    assert_one_line_error(nu("resolve", "nid001", "--release"), 2, "nid001", "DONE", "not FAIL")


@pytest.mark.parametrize("flags", [[], ["--retry", "--release"]], ids=["neither", "both"])
def test_resolve_needs_exactly_one_of_retry_and_release(flags: list[str], nu_env: Path) -> None:
    assert_one_line_error(nu("resolve", "nid001", *flags), 2, "--retry/--release")


def test_resolve_refuses_a_name_that_would_leave_the_root(nu_env: Path) -> None:
    assert_one_line_error(nu("resolve", "../x", "--retry"), 2, "'../x'")


def test_publish_of_a_bad_hostlist_changes_nothing(nu_env: Path, tmp_path: Path) -> None:
    assert_one_line_error(nu("publish", U1, "--nodes", "nid[001-", "--bundle", str(bundle(tmp_path))), 2, "hostlist")
    assert not (nu_env / "active-updates.list").exists()


def test_publish_of_a_missing_bundle_dir_names_it(nu_env: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-bundle"
    assert_one_line_error(nu("publish", U1, "--nodes", "nid001", "--bundle", str(missing)), 2, str(missing))


def test_publish_of_a_bundle_without_update_sh_names_the_script(nu_env: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(nu("publish", U1, "--nodes", "nid001", "--bundle", str(empty)), 2, "update.sh", "missing")


def test_publish_twice_says_where_the_first_one_is(nu_env: Path, tmp_path: Path) -> None:
    source = bundle(tmp_path)
    assert nu("publish", U1, "--nodes", "nid001", "--bundle", str(source))[0] == 0
    assert_one_line_error(nu("publish", U1, "--nodes", "nid001", "--bundle", str(source)), 2, "published twice")


def test_list_of_a_catalog_with_a_bad_line_names_the_line(nu_env: Path) -> None:
    nu_env.mkdir(parents=True)
    (nu_env / "active-updates.list").write_text(f"{U1} nid001\n2026 nid002\n")
    assert_one_line_error(nu("list"), 2, "active-updates.list:2", "codename")


def test_simulate_with_a_bad_value_names_the_field(nu_env: Path) -> None:
    assert_one_line_error(nu("simulate", "--utilization", "1.5"), 2, "utilization")


def test_a_tick_whose_slurm_fails_is_one_line_and_exit_1(nu_env: Path, fake_slurm: Path) -> None:
    down = "#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\nexit 1\n"
    (fake_slurm / "sinfo").write_text(down)
    assert_one_line_error(nu("tick", "--dry-run"), 1, "sinfo", "Unable to contact slurm controller")


def test_a_node_side_command_without_a_node_name_says_how_to_give_one(nu_env: Path) -> None:
    assert_one_line_error(nu("boot"), 2, "SLURMD_NODENAME")


# --- the operator's happy path --------------------------------------------------------------------------------
def test_publish_list_tick_status_retire(nu_env: Path, tmp_path: Path, fake_slurm: Path) -> None:
    code, out, err = nu("publish", U1, "--nodes", "nid[001-002]", "--bundle", str(bundle(tmp_path)), "--canary", "1")
    assert code == 0, err
    assert f"published {U1} for 2 node(s), canary 1" in out
    code, out, _ = nu("list")
    assert code == 0 and U1 in out and "nid[001-002]" in out
    for node in ("nid001", "nid002"):  # the nodes booted long ago
        node_side.write_level(node, "20260101000000")
        assert nu("epilog", node)[0] == 0

    code, out, err = nu("tick", "--dry-run")
    assert code == 0, err
    assert "would reserve ['nid001']" in out and "0 of 2 nodes updated" in out
    assert not spool.ledger_path(nu_env).exists()  # a dry run writes no ledger

    # No --dry-run: the fake scontrol refuses to create the reservation (its exit 1), so the tick fails in one line.
    assert_one_line_error(nu("tick"), 1, "scontrol create reservation")

    code, out, _ = nu("status", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = nu("retire", U1)
    assert code == 0 and f"retired {U1}" in out


def test_simulate_prints_the_makespan_next_to_the_lower_bound(nu_env: Path) -> None:
    code, out, _ = nu("simulate", "--nodes", "20", "--res-limit", "5", "--utilization", "0")
    assert code == 0
    assert "nodes 20, res_limit 5" in out and "lower bound" in out


# --- the node side: argv that slurmd and the apply job run ---------------------------------------------------
def test_boot_epilog_apply_keep_their_argv(nu_env: Path, tmp_path: Path) -> None:
    assert nu("boot", "nid001")[0] == 0
    booted = node_side.read_level("nid001")
    assert booted is not None
    later = "20991231000000"  # newer than the boot time: the node needs it
    assert (
        nu("publish", later, "--nodes", "nid001", "--bundle", str(bundle(tmp_path, 'echo "$NODE" > "$LOCAL_DIR/x"\n')))[
            0
        ]
        == 0
    )
    assert nu("epilog", "nid001")[0] == 0
    reports, _ = spool.read_reports(nu_env)
    assert [(r.node, r.level, r.source) for r in reports] == [("nid001", booted, "epilog")]
    assert nu("apply", "nid001")[0] == 0
    assert node_side.read_level("nid001") == later
    assert (node_side.local_dir("nid001") / "x").read_text().strip() == "nid001"


def test_apply_exits_1_when_an_update_fails(nu_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURMD_NODENAME", "nid002")  # as the apply job's srun gives it: no NODE argument
    node_side.write_level("nid002", "20260101000000")
    assert nu("publish", U1, "--nodes", "nid002", "--bundle", str(bundle(tmp_path, "exit 3\n")))[0] == 0
    assert nu("apply")[0] == 1
    assert node_side.read_level("nid002") == "20260101000000"


def test_an_epilog_never_fails_even_with_bad_settings(nu_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSFLOW_NU_RES_LIMIT", "abc")  # a failing epilog would drain the node
    monkeypatch.setenv("SLURMD_NODENAME", "nid001")
    assert CliRunner().invoke(app, ["nu", "epilog"]).exit_code == 0
    assert CliRunner().invoke(app, ["stack", "epilog"]).exit_code == 0


def test_the_stack_hooks_boot_a_node_and_log_its_epilog(nu_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CliRunner().invoke(app, ["stack", "node-boot", "nid003"]).exit_code == 0  # no argv after --: no exec
    assert node_side.read_level("nid003") is not None
    monkeypatch.setenv("SLURMD_NODENAME", "nid003")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert CliRunner().invoke(app, ["stack", "epilog"]).exit_code == 0
    log = Path(os.environ["OPSFLOW_HOME"]) / "slurm" / "epilog.log"
    assert "job=42 node=nid003" in log.read_text()


# --- read-only commands import no Prefect ---------------------------------------------------------------------
PROBE = r"""
import json, sys
from typer.testing import CliRunner
from opsflow.cli import app
codes = {" ".join(c): CliRunner().invoke(app, c).exit_code for c in json.loads(sys.argv[1])}
print(json.dumps({"codes": codes, "prefect": "prefect" in sys.modules}))
"""


def test_status_list_and_a_dry_run_tick_do_not_import_prefect(nu_env: Path, tmp_path: Path, fake_slurm: Path) -> None:
    assert nu("publish", U1, "--nodes", "nid[001-002]", "--bundle", str(bundle(tmp_path)))[0] == 0
    commands = [["nu", "status"], ["nu", "list"], ["nu", "tick", "--dry-run"]]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["codes"] == {"nu status": 0, "nu list": 0, "nu tick --dry-run": 0}, done.stderr
    assert answer["prefect"] is False


def test_check_reports_a_node_behind_the_catalog_and_one_up_to_date(nu_env: Path, tmp_path: Path) -> None:
    assert nu("publish", U1, "--nodes", "nid001", "--bundle", str(bundle(tmp_path)))[0] == 0
    node_side.write_level("nid001", "20260101000000")
    code, out, _ = nu("check", "nid001")
    assert code == 0 and f"nid001: behind, requested {U1}" in out
    reports, _ = spool.read_reports(nu_env)
    assert [(r.node, r.source) for r in reports] == [("nid001", "check")]
    node_side.write_level("nid001", U1)
    assert "nid001: nothing pending" in nu("check", "nid001")[1]


def test_the_stacks_node_checks_loop_reports_nodes_behind_and_keeps_a_fresh_epilog_report(
    nu_env: Path, tmp_path: Path
) -> None:
    from node_update.models import LevelReport

    old = "20260101000000"
    assert nu("publish", U1, "--nodes", "nid[001-004]", "--bundle", str(bundle(tmp_path)))[0] == 0
    for node in ("nid001", "nid002", "nid004"):
        node_side.write_level(node, old)
    node_side.write_level("nid003", U1)  # up to date; nid005 has no local.version: level unknown, no report
    spool.write_report(nu_env, LevelReport(node="nid002", level=old, at=1.0, source="epilog"))

    def loop(rounds: int) -> str:
        args = ["stack", "node-checks", "nid[001-005]", "--every", "30", "--rounds", str(rounds)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return result.stdout

    out = loop(1)
    assert [line.split()[1] for line in out.splitlines()] == ["nid001:", "nid004:"], out
    sources = {r.node: r.source for r in spool.read_reports(nu_env)[0]}
    assert sources == {"nid001": "check", "nid002": "epilog", "nid004": "check"}
    os.utime(spool.report_path(nu_env, "nid002"), (time.time() - 60, time.time() - 60))  # a round ago
    assert "nid002: behind, requested" in loop(1)
    assert {r.node: r.source for r in spool.read_reports(nu_env)[0]}["nid002"] == "check"


def test_hold_and_unhold_show_in_status_and_refuse_an_unknown_node(nu_env: Path) -> None:
    from node_update.models import Ledger, NodeRecord

    spool.save_ledger(nu_env, Ledger(nodes={"nid001": NodeRecord(level=U1)}))
    assert_one_line_error(nu("hold", "nid009", "--reason", "x"), 2, "nid009", "unknown")
    code, out, err = nu("hold", "nid001", "--reason", "bad DIMM", "--out")
    assert code == 0 and "held out by" in out and "bad DIMM" in out, err
    code, out, _ = nu("status", "--json")
    assert json.loads(out)[0]["hold"].startswith("out by ")
    assert nu("unhold", "nid001")[0] == 0
    assert json.loads(nu("status", "--json")[1])[0]["hold"] == ""


def test_publish_approve_then_decide_without_prefect_records_the_answer(nu_env: Path, tmp_path: Path) -> None:
    assert_one_line_error(nu("publish", U1, "--nodes", "nid[001-004]", "--approve"), 2, "--approve", "--canary")
    code, out, err = nu("publish", U1, "--nodes", "nid[001-004]", "--canary", "1", "--approve",
                        "--bundle", str(bundle(tmp_path)))  # fmt: skip
    assert code == 0 and "then waits for approval" in out, err
    assert "pending" in nu("list")[1]
    spool.save_ledger(nu_env, Ledger(nodes={"nid001": NodeRecord(level="20260101000000")}))
    assert_one_line_error(nu("decide", U1), 2, "canary is not done yet", "0 of 1")
    spool.save_ledger(nu_env, Ledger(nodes={"nid001": NodeRecord(level=U1)}))
    # No approval run (no Prefect here): only that run's flow saves a res_limit in the settings Block.
    assert_one_line_error(nu("decide", U1, "--res-limit", "8"), 2, "res_limit", "no approval run waits")
    code, out, err = nu("decide", U1, "--comment", "canary fine")
    assert code == 0 and "widened to 4 node(s)" in out, err
    line = (nu_env / "active-updates.list").read_text()
    assert "approval=widened" in line and "canary fine" in line
    assert_one_line_error(nu("decide", U1, "--retire"), 2, "waits for no decision", "approval=widened")
