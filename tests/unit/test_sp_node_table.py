"""The node table (seed 002, req. 1510-1520): published samples joined with the workers of every pool by host;
stale and missing samples say so instead of showing numbers; publishing and reading the sample files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stage_pipeline.monitor import nodes_dir, publish_sample, read_published, sample_node
from stage_pipeline.node_table import (
    COLUMNS,
    MEASUREMENTS,
    STALE_INTERVALS,
    GpuSample,
    NodeSnapshot,
    PublishedSample,
    WorkerView,
    host_of_worker,
    is_stale,
    node_rows,
    sample_file_name,
)

NOW = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)
A100 = GpuSample(index=0, name="A100", util_percent=35.0, mem_used_mb=2048, mem_total_mb=40960)


def published(host: str, age_s: float = 2.0, interval_s: float = 10.0, **changes: object) -> PublishedSample:
    snap = NodeSnapshot(
        hostname=host, time=NOW - timedelta(seconds=age_s), cpu_percent=12.34, cpu_count=8,
        load_avg=(0.5, 0.25, 0.125), mem_total_bytes=16 * 2**30, mem_used_bytes=4 * 2**30, mem_percent=25.0,
        net_bytes_sent=10, net_bytes_recv=20, net_sent_rate=2048.0, net_recv_rate=10240.0,
    ).model_copy(update=changes)  # fmt: skip
    return PublishedSample(interval_s=interval_s, snapshot=snap)


def worker(name: str, pool: str = "cpu", status: str = "ONLINE", beat_age_s: float | None = 5.0) -> WorkerView:
    beat = None if beat_age_s is None else NOW - timedelta(seconds=beat_age_s)
    return WorkerView(name=name, pool=pool, status=status, last_heartbeat=beat)


def by_node(rows: list[dict[str, str | int | float]]) -> dict[str, dict[str, str | int | float]]:
    return {str(r["node"]): r for r in rows}


def test_one_row_per_node_with_every_pool_on_it() -> None:
    rows = node_rows(
        [published("gpu01", gpus=[A100]), published("cpu01")],
        [worker("opsflow-gpu-gpu01", "gpu"), worker("opsflow-cpu-gpu01", "cpu"), worker("opsflow-cpu-cpu01")],
        NOW,
    )
    assert [r["node"] for r in rows] == ["cpu01", "gpu01"]
    assert all(list(r) == list(COLUMNS) for r in rows)
    gpu01 = by_node(rows)["gpu01"]
    assert gpu01 == {
        "node": "gpu01", "pools": "cpu ONLINE; gpu ONLINE", "workers": "opsflow-cpu-gpu01, opsflow-gpu-gpu01",
        "sample": "2 s ago", "time": "2026-03-04T11:59:58+00:00", "cpu %": 12.3, "cores": 8,
        "load 1/5/15": "0.50 0.25 0.12", "mem GiB": "4.0/16.0", "mem %": 25.0, "net in KiB/s": 10.0,
        "net out KiB/s": 2.0, "gpus": "0: A100 35% 2.0/40.0 GiB",
    }  # fmt: skip


def test_a_stale_sample_shows_its_age_but_no_numbers() -> None:
    limit = STALE_INTERVALS * 10.0
    fresh, stale = published("n1", age_s=limit), published("n2", age_s=limit + 1)
    assert not is_stale(fresh, NOW) and is_stale(stale, NOW)
    rows = by_node(node_rows([fresh, stale], [worker("opsflow-cpu-n2")], NOW))
    assert rows["n1"]["cpu %"] == 12.3 and rows["n1"]["sample"] == "30 s ago"
    n2 = rows["n2"]
    assert n2["sample"] == "STALE: 31 s old (published every 10 s)"
    assert n2["time"] == (NOW - timedelta(seconds=31)).isoformat()
    assert all(n2[c] == "" for c in MEASUREMENTS)
    assert n2["pools"] == "cpu ONLINE"


def test_staleness_follows_each_publishers_own_interval() -> None:
    rows = by_node(node_rows([published("slow", age_s=100, interval_s=60), published("quick", age_s=4, interval_s=1)],
                             [], NOW))  # fmt: skip
    assert rows["slow"]["sample"] == "1 min ago" and rows["slow"]["cpu %"] == 12.3
    assert str(rows["quick"]["sample"]).startswith("STALE") and rows["quick"]["cpu %"] == ""


def test_a_worker_without_a_sample_is_a_missing_row() -> None:
    rows = by_node(node_rows([], [worker("opsflow-gpu-gpu07", "gpu", "OFFLINE", beat_age_s=600)], NOW))
    assert rows["gpu07"]["sample"] == "MISSING: no sample published"
    assert rows["gpu07"]["pools"] == "gpu OFFLINE (heartbeat 10 min ago)"
    assert all(rows["gpu07"][c] == "" for c in ("time", *MEASUREMENTS))


def test_a_node_without_a_worker_is_still_listed() -> None:
    (row,) = node_rows([published("login01")], [], NOW)
    assert row["node"] == "login01" and row["pools"] == "no worker" and row["workers"] == ""
    assert row["cpu %"] == 12.3


def test_hosts_of_worker_names() -> None:
    hosts = ["node7", "de-node7", "n1"]
    assert host_of_worker(worker("opsflow-cpu-nid001.cluster"), hosts) == "nid001.cluster"
    assert host_of_worker(worker("opsflow-cpu-"), hosts) is None  # no host after the prefix, no other match
    assert host_of_worker(worker("site-de-node7"), hosts) == "de-node7"  # the longest published host it ends with
    assert host_of_worker(worker("n1"), hosts) == "n1"
    assert host_of_worker(worker("xn1"), hosts) is None  # a tail only at a dash
    assert host_of_worker(worker("opsflow-gpu-n1", pool="cpu"), hosts) == "n1"  # the other pool's prefix: by tail


def test_workers_with_no_known_host_get_their_own_rows_last() -> None:
    rows = node_rows([published("n1")], [worker("ProcessWorker 9f"), worker("ProcessWorker 1a", "gpu")], NOW)
    assert [(r["node"], r["workers"]) for r in rows] == [
        ("n1", ""), ("?", "ProcessWorker 9f"), ("?", "ProcessWorker 1a"),
    ]  # fmt: skip
    assert rows[1]["sample"] == "MISSING: the worker's name names no known host"


def test_the_newest_sample_of_a_host_wins() -> None:
    (row,) = node_rows([published("n1", age_s=50, cpu_percent=99.0), published("n1", age_s=1)], [], NOW)
    assert row["sample"] == "1 s ago" and row["cpu %"] == 12.3


def test_a_clock_ahead_is_no_negative_age() -> None:
    (row,) = node_rows([published("n1", age_s=-5)], [], NOW)
    assert row["sample"] == "0 s ago"


def test_no_nodes_no_rows() -> None:
    assert node_rows([], [], NOW) == []


@pytest.mark.parametrize(("host", "name"), [("n1", "n1.json"), ("a/b", "a_b.json"), (".hidden", "_.hidden.json")])
def test_sample_files_stay_in_the_nodes_folder(host: str, name: str) -> None:
    assert sample_file_name(host) == name


def test_published_samples_round_trip_and_bad_files_are_named(tmp_path: Path) -> None:
    snap = sample_node(0.01, gpus=lambda: ([], "no NVIDIA driver"), hostname="node-a")
    path = publish_sample(tmp_path, snap, interval_s=2.5)
    assert path == nodes_dir(tmp_path) / "node-a.json"
    (nodes_dir(tmp_path) / "broken.json").write_text("{not json")
    (nodes_dir(tmp_path) / ".node-b.json.x.tmp").write_text("half")  # a publisher's temporary file
    samples, problems = read_published(tmp_path)
    assert samples == [PublishedSample(interval_s=2.5, snapshot=snap)]
    assert len(problems) == 1 and "broken.json: unreadable sample" in problems[0]
    assert read_published(tmp_path / "nothing-here") == ([], [])
