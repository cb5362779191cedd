"""Codenames, catalog lines and safe names: pure parsing, every bad input with its exact message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from node_update.catalog import (
    CatalogError,
    UnknownCodenameError,
    catalog_path,
    expand_nodes,
    load_catalog,
    parse_catalog,
    publish,
    record_decision,
    render_entry,
)
from node_update.codename import CodenameError, codename_at, parse_codename
from node_update.models import CanaryDecision, Catalog, CatalogEntry
from node_update.spool import UnsafeNameError, safe_name

U1 = "20260101000000"
U2 = "20260201000000"
U3 = "20260301000000"
OPTIONS = "canary=N or approval=pending|widened"
NEEDS_CANARY = "an approval gate needs canary=N (N >= 1): it waits after the canary"


@pytest.mark.parametrize("text", ["20260101000000", "20240229235959", "19991231000000"])
def test_valid_codenames_parse(text: str) -> None:
    assert parse_codename(text) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2026010100000", "expected 14 digits YYYYmmddHHMMSS"),
        ("202601010000000", "expected 14 digits YYYYmmddHHMMSS"),
        ("2026-01-01T000", "expected 14 digits YYYYmmddHHMMSS"),
        ("\uff120260101000000", "expected 14 digits YYYYmmddHHMMSS"),  # a fullwidth (non-ASCII) digit
        ("20260101000000\n", "expected 14 digits YYYYmmddHHMMSS"),
        ("", "expected 14 digits YYYYmmddHHMMSS"),
        ("20261301000000", "not a real date-time: month must be in 1..12"),
        ("20260001000000", "not a real date-time: month must be in 1..12"),
        ("20250229000000", "not a real date-time: day is out of range for month"),
        ("20260431000000", "not a real date-time: day is out of range for month"),
        ("20260101240000", "not a real date-time: hour must be in 0..23"),
        ("20260101006000", "not a real date-time: minute must be in 0..59"),
        ("20260101000060", "not a real date-time: second must be in 0..59"),
        ("00000101000000", "not a real date-time: year 0 is out of range"),
    ],
)
def test_invalid_codenames_name_value_and_reason(text: str, why: str) -> None:
    with pytest.raises(CodenameError) as err:
        parse_codename(text)
    assert err.value.why == why
    assert str(err.value) == f"invalid codename {text!r}: {why}"
    assert isinstance(err.value, ValueError)


def test_codename_at_is_utc() -> None:
    assert codename_at(0) == "19700101000000"
    assert codename_at(datetime(2026, 3, 4, 5, 6, 7)) == "20260304050607"  # naive = UTC
    plus2 = timezone(timedelta(hours=2))
    assert codename_at(datetime(2026, 3, 4, 5, 6, 7, tzinfo=plus2)) == "20260304030607"
    moment = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert codename_at(moment.timestamp()) == "20261231235959"
    assert parse_codename(codename_at(moment)) == "20261231235959"


def test_catalog_comments_blank_lines_and_options() -> None:
    text = (
        "# active updates\n"
        "\n"
        f"{U2}  nid[003,001-002],nid002   canary=1   # trailing comment\n"
        "   \t \n"
        f"{U1} nid007\n"
        "#20260401000000 nid001\n"
    )
    cat = parse_catalog(text, "a.list")
    assert cat.error is None
    assert [(e.codename, e.nodes, e.canary, e.line) for e in cat.entries] == [
        (U2, ["nid001", "nid002", "nid003"], 1, 3),
        (U1, ["nid007"], 0, 5),
    ]


def test_empty_catalog() -> None:
    assert parse_catalog("", "a.list") == Catalog()
    assert parse_catalog("# nothing\n\n", "a.list") == Catalog()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2026 nid001", "a.list:2: codename: '2026': expected 14 digits YYYYmmddHHMMSS"),
        ("20261301000000 nid001", "a.list:2: codename: '20261301000000': not a real date-time: month must be in 1..12"),
        (f"{U2}", "a.list:2: hostlist: missing (expected '<codename> <hostlist> [canary=N]')"),
        (f"{U2} nid[001-", "a.list:2: hostlist: 'nid[001-' is not a Slurm hostlist: unbalanced brackets"),
        (f"{U2} nid[3-1]", "a.list:2: hostlist: 'nid[3-1]' is not a Slurm hostlist: start > stop"),
        (f"{U2} ,", "a.list:2: hostlist: ',' names no node"),
        (
            f"{U2} a/b",
            "a.list:2: hostlist: node name 'a/b': only letters, digits, '.', '_' and '-' are allowed",
        ),
        (f"{U2} ..x", "a.list:2: hostlist: node name '..x': must not start with '.' or contain '..'"),
        (f"{U2} nid001 canary=x", "a.list:2: canary: 'x' is not a whole number >= 0"),
        (f"{U2} nid001 canary=-1", "a.list:2: canary: '-1' is not a whole number >= 0"),
        (f"{U2} nid001 canary=1 canary=2", "a.list:2: canary: given twice"),
        (f"{U2} nid001 limit=3", f"a.list:2: options: unknown 'limit=3' (expected {OPTIONS})"),
        (f"{U2} nid001 nid002", f"a.list:2: options: unknown 'nid002' (expected {OPTIONS})"),
        (f"{U2} nid001 approval=pending", f"a.list:2: approval: {NEEDS_CANARY}"),
        (f"{U2} nid001 canary=1 approval=yes", "a.list:2: approval: 'yes' is not one of pending, widened"),
        (f"{U2} nid001 canary=1 approval=pending approval=widened", "a.list:2: approval: given twice"),
        (f"{U1} nid002", "a.list:2: codename: 20260101000000 is already on line 1"),
    ],
)
def test_bad_line_sets_error_and_keeps_good_entries(line: str, message: str) -> None:
    text = f"{U1} nid001\n{line}\n{U3} nid003\n"
    cat = parse_catalog(text, "a.list")
    assert cat.error == message
    assert [e.codename for e in cat.entries] == [U1, U3]


def test_only_first_bad_line_is_reported() -> None:
    cat = parse_catalog(f"{U1} nid001\nbad\n{U2} nid[\n", "x/active-updates.list")
    assert cat.error == "x/active-updates.list:2: codename: 'bad': expected 14 digits YYYYmmddHHMMSS"
    assert [e.codename for e in cat.entries] == [U1]


def test_line_numbers_count_every_newline() -> None:
    cat = parse_catalog(f"\n\n# c\n{U1} nid001\r\n\nbad\n", "a.list")
    assert cat.entries[0].line == 4
    assert cat.error is not None and cat.error.startswith("a.list:6: codename:")


@pytest.mark.parametrize(
    "entry",
    [
        CatalogEntry(codename=U1, nodes=["nid001"]),
        CatalogEntry(codename=U2, nodes=["nid001", "nid002", "nid003", "nid007", "login1"], canary=2),
        CatalogEntry(codename=U3, nodes=[f"n{i:05d}" for i in range(1, 10001)], canary=0),
        CatalogEntry(codename=U3, nodes=["a.b", "c-d", "e_f"], canary=9),
    ],
)
def test_render_round_trip(entry: CatalogEntry) -> None:
    line = render_entry(entry)
    cat = parse_catalog(line + "\n", "a.list")
    assert cat.error is None
    (back,) = cat.entries
    assert (back.codename, back.nodes, back.canary) == (entry.codename, sorted(entry.nodes), entry.canary)


def test_render_collects_hostlist() -> None:
    entry = CatalogEntry(codename=U1, nodes=["nid001", "nid002", "nid003", "nid007"], canary=1)
    assert render_entry(entry) == f"{U1} nid[001-003,007] canary=1"
    assert render_entry(entry.model_copy(update={"canary": 0})) == f"{U1} nid[001-003,007]"


def test_pending_for_is_codename_order_and_respects_level_cover_and_skip() -> None:
    cat = parse_catalog(f"{U3} nid[001-002]\n{U1} nid001\n{U2} nid[001-003]\n", "a.list")
    assert cat.pending_for("nid001", "20251231000000") == [U1, U2, U3]
    assert cat.pending_for("nid001", U1) == [U2, U3]
    assert cat.pending_for("nid001", U3) == []
    assert cat.pending_for("nid003", "20251231000000") == [U2]
    assert cat.pending_for("nid009", "20251231000000") == []
    assert cat.pending_for("nid001", None) == []  # unknown level: nothing is guessed
    assert cat.pending_for("nid001", "20251231000000", skipped=[U2]) == [U1, U3]


def test_expand_nodes_sorted_unique() -> None:
    assert expand_nodes("nid[010,002],nid002,login1") == ["login1", "nid002", "nid010"]
    with pytest.raises(ValueError, match="names no node"):
        expand_nodes("")


@pytest.mark.parametrize("name", ["nid001", "a.b", "c-d_e", "N1"])
def test_safe_names(name: str) -> None:
    assert safe_name(name) == name


@pytest.mark.parametrize("name", ["../x", "..", ".", ".hidden", "a/b", "a b", "a\nb", "", "x" * 201, "nöd", "a..b"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeNameError):
        safe_name(name)


def test_an_approval_gate_parses_and_renders_back() -> None:
    entry = parse_catalog(f"{U1} nid[001-004] canary=2 approval=pending\n", "a.list").entries[0]
    assert (entry.canary, entry.approval) == (2, "pending")
    assert render_entry(entry) == f"{U1} nid[001-004] canary=2 approval=pending"


def _gated_root(tmp_path: Path) -> Path:
    catalog_path(tmp_path).write_bytes(
        f"# site catalog\n{U1} nid001\n{U2} nid[001-004] canary=1 approval=pending  # kernel\n{U3} nid009\n".encode()
    )
    return tmp_path


def test_a_widen_decision_is_recorded_on_its_line_and_nothing_else_changes(tmp_path: Path) -> None:
    root = _gated_root(tmp_path)
    decision = CanaryDecision(action="widen", res_limit=16, comment="looks good\nreally")
    record_decision(root, U2, decision, by="alice", at=0)
    lines = catalog_path(root).read_text().split("\n")
    assert lines[:2] == ["# site catalog", f"{U1} nid001"] and lines[3:] == [f"{U3} nid009", ""]
    assert lines[2] == (
        f"{U2} nid[001-004] canary=1 approval=widened  "
        "# widened by alice at 1970-01-01T00:00:00Z, res_limit 16: looks good really"
    )
    assert load_catalog(root).entries[1].approval == "widened"
    with pytest.raises(CatalogError, match="waits for no decision \\(approval=widened\\)"):
        record_decision(root, U2, decision, by="alice", at=0)


def test_a_retire_decision_removes_the_update_and_keeps_a_comment_line(tmp_path: Path) -> None:
    root = _gated_root(tmp_path)
    record_decision(root, U2, CanaryDecision(action="retire", comment="oops"), by="bob", at=0)
    assert [e.codename for e in load_catalog(root).entries] == [U1, U3]
    assert "retired after its canary by bob at 1970-01-01T00:00:00Z: oops" in catalog_path(root).read_text()


def test_a_decision_on_an_ungated_or_unknown_update_is_refused(tmp_path: Path) -> None:
    root = _gated_root(tmp_path)
    before = catalog_path(root).read_bytes()
    with pytest.raises(CatalogError, match="published without --approve"):
        record_decision(root, U1, CanaryDecision(), by="x", at=0)
    with pytest.raises(UnknownCodenameError):
        record_decision(root, "20300101000000", CanaryDecision(), by="x", at=0)
    assert catalog_path(root).read_bytes() == before


def test_publish_with_approve_needs_a_canary(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="--approve: needs --canary"):
        publish(tmp_path, U1, "nid001", approve=True)
    assert not catalog_path(tmp_path).exists()
