"""`opsflow scaler …`: bad or missing config files are exit 2 with file:line:key, one line per problem; an
unreachable Prefect API for `run` is exit 1 in one line; `preview` holds on unreachable sources without
importing Prefect.

Every test runs with a temporary home and no Prefect setting inherited, and points the config at loopback port 1,
where nothing listens, so it needs no server, no Spark and no Prometheus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsflow.cli import app
from spark_scaler.config import EXAMPLE_THESIS_YAML

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "http://127.0.0.1:1"
#: Three problems, each on its own line of the file: a bad value, thresholds the wrong way round, a typo.
BAD = """\
general:
  interval_seconds: 0
  cooldown_period_seconds: 5
  recurrence_factor: 2
  prometheus_url: "http://127.0.0.1:1"
metrics:
  cpu:
    query: up
    target_utilization: 0.5
    thresholds: {min: 0.7, max: 0.6}
worker:
  thresholds: {min: 1, max: 3}
opsflow:
  intervall: 3
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary OPSFLOW_HOME, with no Prefect setting inherited."""
    for var in list(os.environ):
        if var.startswith(("PREFECT_", "OPSFLOW_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("OPSFLOW_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def nowhere_config(tmp_path: Path) -> Path:
    """A valid config whose Prometheus and Spark master are unreachable (loopback port 1)."""
    path = tmp_path / "nowhere.yaml"
    text = EXAMPLE_THESIS_YAML.replace("http://localhost:9090", NOWHERE)
    path.write_text(text + f"opsflow:\n  spark_master_ui_url: {NOWHERE}\n")
    return path


def scaler(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``opsflow scaler ARGS`` in-process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, ["scaler", *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", ["validate", "preview", "tick", "status", "run"])
def test_a_bad_config_is_exit_2_with_one_line_per_problem(home: Path, tmp_path: Path, command: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    code, _, stderr = scaler(command, "--config", str(path))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert lines == [
        f"error: {path}:2: general.interval_seconds: Input should be greater than 0 (got 0)",
        f"{path}:10: metrics.cpu.thresholds.max: must be greater than thresholds.min (0.7) (got 0.6)",
        f"{path}:14: opsflow.intervall: unknown key (a typo? see the README for the keys of this section)",
    ]


@pytest.mark.parametrize("command", ["validate", "preview", "status", "run"])
def test_a_missing_config_is_exit_2_in_one_line(home: Path, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope.yaml"
    code, _, stderr = scaler(command, "--config", str(missing))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {missing}:1: (file): cannot read"), stderr


def test_run_with_an_unreachable_prefect_api_is_exit_1_in_one_line(home: Path, tmp_path: Path) -> None:
    code, _, stderr = scaler(
        "run", "--config", str(nowhere_config(tmp_path)), env={"PREFECT_API_URL": f"{NOWHERE}/api"}
    )
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"error: cannot reach the Prefect API at {NOWHERE}/api"), stderr


def test_blocks_on_an_unreachable_prefect_api_are_exit_1_in_one_line(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(EXAMPLE_THESIS_YAML + "opsflow:\n  local_stack: true\n")
    code, _, stderr = scaler("preview", "--config", str(path), env={"PREFECT_API_URL": f"{NOWHERE}/api"})
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, stderr
    assert f"cannot reach the Prefect API at {NOWHERE}/api" in lines[0] and "opsflow.local_stack" in lines[0]


def test_validate_names_where_the_scaler_reads(home: Path, tmp_path: Path) -> None:
    code, stdout, _ = scaler("validate", "--config", str(ROOT / "examples" / "spark_scaler" / "autoscaler.yaml"))
    assert code == 0
    assert "ok:" in stdout and "2-4 workers" in stdout and "Blocks 'local'" in stdout


def test_status_of_a_fresh_controller_says_the_master_is_unreachable(home: Path, tmp_path: Path) -> None:
    code, stdout, _ = scaler("status", "--config", str(nowhere_config(tmp_path)))
    assert code == 0
    assert "unreachable (bounds 1-30)" in stdout and "no action yet" in stdout


PREVIEW_WITHOUT_PREFECT = """\
import json, sys
from typer.testing import CliRunner
from opsflow.cli import app

result = CliRunner().invoke(app, ["scaler", "preview", "--config", sys.argv[1]])
print(json.dumps({"code": result.exit_code, "out": result.stdout, "prefect": "prefect" in sys.modules}))
"""


def test_preview_holds_on_missing_data_without_importing_prefect(home: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run(
        [sys.executable, "-c", PREVIEW_WITHOUT_PREFECT, str(nowhere_config(tmp_path))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, result["out"]
    assert "hold" in result["out"] and "missing data" in result["out"]
    assert "Spark master unreachable" in result["out"]
    assert result["prefect"] is False
    assert not (home / "scaler").exists()  # a preview saves no state
    assert "thesis (Algorithm 1 + KHPA, cooldown, bounds, no scale-in while apps run)" in result["out"]


def test_preview_names_the_policy_the_file_chose(home: Path, tmp_path: Path) -> None:
    path = nowhere_config(tmp_path)
    path.write_text(path.read_text() + "  policy: opsflow\n")
    code, out, _ = scaler("preview", "--config", str(path))
    assert code == 0, out
    assert "opsflow (the thesis's rules and the switches below)" in " ".join(out.split())
