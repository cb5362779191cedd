"""Parallel mode's common start (``config_trials.spark_runner.start_together``) on real files and threads.

The peers of a round agree on one feed start through marker files in the round's folder; these tests run the
peers as threads of one process, as the ``config-trial`` flow does, with a folder of their own.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from config_trials.spark_runner import START_MARGIN_S, Peers, _mark, start_together


def run_peers(folder: Path, peers: Peers, delays: dict[str, float], timeout_s: float = 10.0) -> dict[str, float]:
    starts: dict[str, float] = {}
    logs: list[str] = []

    def peer(name: str) -> None:
        time.sleep(delays[name])
        starts[name] = start_together(folder, name, peers, timeout_s, logs.append)

    threads = [threading.Thread(target=peer, args=(n,)) for n in delays]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return starts


def test_peers_ready_at_different_times_start_at_the_same_moment_after_the_last(tmp_path: Path) -> None:
    peers = Peers(variants=["a", "b", "c"], key="k1")
    before = time.time()
    starts = run_peers(tmp_path, peers, {"a": 0.0, "b": 0.3, "c": 0.6})
    assert len(set(starts.values())) == 1, starts
    assert starts["a"] >= before + 0.6 + START_MARGIN_S - 0.05


def test_a_peer_that_failed_before_its_query_ran_is_not_waited_for(tmp_path: Path) -> None:
    peers = Peers(variants=["a", "b"], key="k2")
    _mark(tmp_path, peers, "b", gone=True)
    began = time.monotonic()
    [start] = run_peers(tmp_path, peers, {"a": 0.0}).values()
    assert time.monotonic() - began < 2.0
    assert start <= time.time() + START_MARGIN_S


def test_a_silent_peer_is_given_up_after_the_timeout_and_an_earlier_run_s_markers_do_not_count(
    tmp_path: Path,
) -> None:
    _mark(tmp_path, Peers(variants=["a", "b"], key="earlier"), "b", ready_at=time.time())
    logs: list[str] = []
    began = time.monotonic()
    start_together(tmp_path, "a", Peers(variants=["a", "b"], key="now"), 0.5, logs.append)
    assert time.monotonic() - began >= 0.5
    assert logs == ["a: b not ready within 0.5 s; starting without them"]
