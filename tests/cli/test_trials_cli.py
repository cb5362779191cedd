"""`opsflow trials …`: validate shows the plan or file:line:field problems (exit 2); report rebuilds a trial's
report from its folder; calibrate prints the A/A rates. No server, no Spark."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config_trials.definition import EXAMPLE_TRIAL_YAML, load_definition_text
from config_trials.judge import RoundResult
from opsflow.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config_trials" / "checkpoint.yaml"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in list(os.environ):
        if var.startswith(("PREFECT_", "OPSFLOW_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("OPSFLOW_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def test_validate_shows_what_the_example_will_run() -> None:
    code, out = invoke("trials", "validate", str(EXAMPLE))
    assert code == 0, out
    assert "checkpoint-interval: 2 variants (trigger-2s, trigger-6s; baseline trigger-2s), 5 rounds" in out
    assert "2 comparisons (Holm), none rounds: smallest possible p 0.00794" in out
    assert "10 application runs, at least 3.3 min" in out
    assert "pool" not in out


def test_validate_names_the_variants_that_run_on_the_gpu_pool(tmp_path: Path) -> None:
    (tmp_path / "vehicle_counts.py").write_text("")
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text(EXAMPLE_TRIAL_YAML.replace('parameters: {trigger: "6 seconds"}', 'pool: gpu\n    parameters: {}'))
    code, out = invoke("trials", "validate", str(gpu))
    assert code == 0, out
    assert "trigger-6s: its rounds run on the gpu pool (variant-round/gpu)" in out


def test_a_pool_other_than_cpu_or_gpu_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "vehicle_counts.py").write_text("")
    bad = tmp_path / "tpu.yaml"
    bad.write_text(EXAMPLE_TRIAL_YAML.replace('parameters: {trigger: "6 seconds"}', 'pool: tpu\n    parameters: {}'))
    code, out = invoke("trials", "validate", str(bad))
    line = bad.read_text().splitlines().index("    pool: tpu") + 1
    assert code == 2 and f"{bad}:{line}: variants.1.pool" in out, out


def test_validate_of_a_bad_file_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_TRIAL_YAML.replace("direction: higher", "direction: up").replace("rounds: 5", "rounds: 4"))
    code, out = invoke("trials", "validate", str(bad))
    assert code == 2
    assert f"{bad}:" in out and "metrics.throughput.direction" in out


def test_report_rebuilds_the_files_from_a_trial_folder(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    (trial).mkdir()
    (trial / "definition.yaml").write_text(EXAMPLE_TRIAL_YAML)
    for variant, latency in (("trigger-2s", 1.0), ("trigger-6s", 3.0)):
        for r in range(5):
            here = trial / f"round-{r + 1:02d}" / variant
            here.mkdir(parents=True)
            result = RoundResult(variant=variant, round=r, values={"latency": latency + r / 100, "throughput": 9.0})
            (here / "result.json").write_text(result.model_dump_json())
            (here / "metrics.jsonl").write_text("")
            (here / "usage.json").write_text("[]")
    code, out = invoke("trials", "report", str(trial))
    assert code == 0, out
    assert "winner trigger-2s" in out and "worse" in out
    saved = json.loads((trial / "report.json").read_text())
    assert saved["report"]["winner"] == "trigger-2s"
    assert load_definition_text(EXAMPLE_TRIAL_YAML).model_dump() == saved["definition"]
    assert (trial / "report.md").read_text().startswith("# Trial `checkpoint-interval`: winner **trigger-2s**")


def test_report_of_a_folder_without_a_trial_says_so(tmp_path: Path) -> None:
    code, out = invoke("trials", "report", str(tmp_path))
    assert code == 2 and "holds no trial" in out


def test_calibrate_prints_both_rates() -> None:
    code, out = invoke("trials", "calibrate", str(EXAMPLE), "--trials", "200")
    assert code == 0, out
    assert "200 A/A trials of 5 rounds at alpha 0.05" in out and "testing every sample on its own" in out
