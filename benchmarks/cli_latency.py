"""Wall time of `opsflow` commands from a shell, next to `python -c pass` and `python -c "import prefect"`.

Run: `.venv/bin/python benchmarks/cli_latency.py` (``--runs N`` changes the 5 runs per command).

What it measures: each command's median wall time over 5 runs, as a user's shell sees it: a fresh
``.venv/bin/opsflow ...`` process each time (interpreter start, imports, the work, exit), after one warm-up run
that is not counted. Baselines measured in the same run and the same way: ``python -c pass`` (the floor of any
Python command) and ``python -c "import prefect"`` (what a command pays if it imports Prefect at all); every
figure is also printed as a ratio to both.

Where: the local stack in a fresh temporary ``OPSFLOW_HOME`` with every port shifted by 29000 (a running
`opsflow up` is not disturbed), no Prefect setting from the caller's environment (local mode, as a new user's
shell). Only Slurm runs (`opsflow up --only slurm --home DIR`, 4 nodes), because `nu tick --dry-run` needs one;
one update is published first (`opsflow nu publish`) so that the tick has work, and a pipeline definition is put
in the local store so that `pipeline list` lists something. `opsflow down --home DIR` stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opsflow.stack.config import StackConfig

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OPSFLOW = str(BIN / "opsflow")
PORT_OFFSET = 29000
SLURM_NODES = 4
#: A day ahead of the nodes' boot level (their boot time), so every node is behind and the tick plans to reserve.
CODENAME = time.strftime("%Y%m%d%H%M%S", time.localtime(time.time() + 86400))
DEFINITION = "examples/video_tracking/pipeline.yaml"
SCALER_CONFIG = "examples/spark_scaler/autoscaler.yaml"

#: (label, argv after `opsflow`), in the order printed.
COMMANDS: list[tuple[str, list[str]]] = [
    ("opsflow nu status", ["nu", "status"]),
    ("opsflow nu list", ["nu", "list"]),
    ("opsflow nu tick --dry-run", ["nu", "tick", "--dry-run"]),
    ("opsflow pipeline list", ["pipeline", "list"]),
    (f"opsflow pipeline validate {DEFINITION}", ["pipeline", "validate", DEFINITION]),
    ("opsflow project list", ["project", "list"]),
    (f"opsflow scaler preview --config {SCALER_CONFIG}", ["scaler", "preview", "--config", SCALER_CONFIG]),
    ("opsflow status", ["status"]),
]


@dataclass
class Timing:
    label: str
    runs: list[float]
    returncode: int
    error: str

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def run_once(argv: Sequence[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    done = subprocess.run(list(argv), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t, done


def measure(label: str, argv: Sequence[str], env: dict[str, str], runs: int) -> Timing:
    """One warm-up run (page cache, .pyc files), then ``runs`` timed runs; the last exit code is kept."""
    run_once(argv, env)
    seconds: list[float] = []
    done: subprocess.CompletedProcess[str] | None = None
    for _ in range(runs):
        secs, done = run_once(argv, env)
        seconds.append(secs)
    assert done is not None
    error = "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1][:100]
    return Timing(label, seconds, done.returncode, error)


def shell_env(home: Path) -> dict[str, str]:
    """A new user's shell: the caller's environment without Prefect, opsflow or Slurm settings, plus the home."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPSFLOW_", "SLURM_"))}
    return {**base, "OPSFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}


def opsflow(args: Sequence[str], env: dict[str, str]) -> None:
    """Run a setup command; stop the benchmark with its output if it fails."""
    done = subprocess.run([OPSFLOW, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"`opsflow {' '.join(args)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def prepare(home: Path, env: dict[str, str]) -> None:
    StackConfig(home=home, slurm_nodes=SLURM_NODES).shifted(PORT_OFFSET).save()  # `up` reads the ports from here
    opsflow(["up", "--only", "slurm", "--home", str(home)], env)
    opsflow(["nu", "publish", CODENAME, "--bundle", "examples/node_update/bundle", "--nodes",
             f"nid[001-{SLURM_NODES:03d}]"], env)  # fmt: skip
    library = home / "pipelines" / "pipelines"  # the local store's definitions (opsflow.api.pipelines)
    library.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / DEFINITION, library / "video-tracking.yaml")


def tick_says(env: dict[str, str]) -> str:
    """What the measured tick plans (its first line), to show it had work."""
    done = subprocess.run([OPSFLOW, "nu", "tick", "--dry-run"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if (done.stdout or done.stderr) else ""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Wall time of opsflow commands next to python baselines.")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (median reported)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="opsflow-cli-latency-"))
    env = shell_env(home)
    python = str(BIN / "python")
    try:
        prepare(home, env)
        base = measure("python -c pass", [python, "-c", "pass"], env, args.runs)
        prefect = measure('python -c "import prefect"', [python, "-c", "import prefect"], env, args.runs)
        rows = [measure(label, [OPSFLOW, *cmd], env, args.runs) for label, cmd in COMMANDS]
        plan = tick_says(env)
    finally:
        subprocess.run([OPSFLOW, "down", "--home", str(home)], env=env, cwd=ROOT, capture_output=True, timeout=300)
        shutil.rmtree(home, ignore_errors=True)

    print(f"median of {args.runs} runs (after 1 warm-up) on {os.cpu_count()} cores; Slurm with {SLURM_NODES} "
          f"nodes up in a temporary home (ports +{PORT_OFFSET}); Python {sys.version.split()[0]}")  # fmt: skip
    width = max(len(t.label) for t in [base, prefect, *rows])
    print(f"{'command':<{width}} {'median s':>9} {'min s':>7} {'max s':>7} {'x pass':>8} {'x prefect':>10}  exit")
    for t in [base, prefect, *rows]:
        note = f"  {t.returncode}" + (f" ({t.error})" if t.error else "")
        print(
            f"{t.label:<{width}} {t.median:9.2f} {min(t.runs):7.2f} {max(t.runs):7.2f} "
            f"{t.median / base.median:8.1f} {t.median / prefect.median:10.2f}{note}"
        )
    print(f"the tick's plan: {plan}")


if __name__ == "__main__":
    main()
