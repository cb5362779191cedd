"""``train.write_metrics`` and the command line (train.py imports PySpark only inside ``train``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from train import MIN_ROWS, parse_args, write_metrics

NOT_JSON: dict[str, Any] = {"auc": object()}
METRICS = {"accuracy": 0.81, "auc": 0.87, "rows": 2000, "train_seconds": 3.2}


def test_writes_json_that_reads_back(tmp_path: Path) -> None:
    target = tmp_path / "out" / "metrics.json"  # the parent is created
    write_metrics(target, METRICS)
    assert json.loads(target.read_text()) == METRICS
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temporary file left


def test_replaces_an_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text('{"accuracy": 0.1}')
    write_metrics(target, METRICS)
    assert json.loads(target.read_text())["accuracy"] == 0.81


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_metrics(target, METRICS)
    with pytest.raises(ValueError):
        write_metrics(target, {"auc": float("nan")})  # not valid JSON: refused before anything is written
    with pytest.raises(TypeError):
        write_metrics(target, NOT_JSON)
    assert json.loads(target.read_text()) == METRICS
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_command_line_defaults_and_options() -> None:
    args = parse_args([])
    assert (args.rows, args.seed, args.metrics, args.model_dir, args.fail) == (2000, 42, "metrics.json", "model", False)
    args = parse_args(["--rows", "500", "--seed", "1", "--metrics", "m.json", "--model-dir", "out/m", "--fail"])
    assert (args.rows, args.seed, args.metrics, args.model_dir, args.fail) == (500, 1, "m.json", "out/m", True)


def test_too_few_rows_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--rows", str(MIN_ROWS - 1)])
    assert exit_info.value.code == 2
    assert "--rows" in capsys.readouterr().err
