"""Configuration trials: the orchestration's overhead, the rounds sequential stopping needs, the A/A error rate.

Run: `.venv/bin/python benchmarks/trials.py` (about 8 minutes; ``--no-trial`` runs only the simulations,
in about a minute).

1. **Overhead.** A fresh stack in a temporary ``OPSFLOW_HOME`` with every port shifted by 32000 (Prefect, the cpu
   worker, Spark) runs the ``config-trial`` deployment on the example application: 2 variants x 5 rounds of 8 s.
   Printed: the trial's wall time (the flow run's start to end) against the sum of its variants' rounds (each
   child run's own run time: spark-submit, feed, stop) in the same run; goal at most 1.15x.
2. **Sequential stopping.** Simulated rounds (AR(1) samples, see :mod:`config_trials.calibrate`) of a variant
   20 % slower than the baseline: the rounds the sequential mode (looks after 3..8 rounds) needs to declare it
   worse, next to Timon's fixed 5 rounds (and how often those 5 rounds find it with the same test). And the same
   with identical variants: how often it wrongly declares a difference.
3. **A/A.** The false-positive rate of the round design at 5 rounds and alpha 0.05, next to testing every sample.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config_trials.calibrate import simulate_aa, simulate_sequential  # noqa: E402
from opsflow.stack.config import StackConfig  # noqa: E402

PORT_OFFSET = 32000

TRIAL = f"""\
name: bench-trial
application:
  module: {ROOT / "examples" / "config_trials" / "vehicle_counts.py"}
  arguments: [--window, "5 seconds"]
input:
  seed: 1
  vehicles: {{min: 40, max: 120, period_s: 8}}
variants:
  - name: trigger-1s
    baseline: true
    parameters: {{trigger: "1 second"}}
  - name: trigger-3s
    parameters: {{trigger: "3 seconds"}}
rounds: 5
round_s: 8
warmup_s: 2
metrics:
  latency: {{direction: lower}}
seed: 1
"""


def overhead_part(home: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    import opsflow
    from opsflow.stack.ci_demo import wait_for_run
    from opsflow.stack.env import prefect_client_settings
    from opsflow.stack.manager import down, up

    cfg = StackConfig(home=home).shifted(PORT_OFFSET)
    try:
        up(cfg, only=["prefect", "worker-cpu", "spark"])
        with prefect_client_settings(cfg):
            definition = home / "bench-trial.yaml"
            definition.write_text(TRIAL)
            started = opsflow.connect(home).trials.run(definition, home / "trial")
            run = wait_for_run(started.flow_run_id, timeout_s=1200)
            with get_client(sync_client=True) as client:
                children = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
                    ),
                    limit=100,
                )
    finally:
        down(cfg)
    wall = (run.end_time - run.start_time).total_seconds() if run.end_time and run.start_time else float("nan")
    rounds = sum(c.total_run_time.total_seconds() for c in children)
    print(f"overhead: trial {TRIAL.split()[1]}, {len(children)} variant rounds, ended {run.state.type.value}")
    print(f"  trial wall time           {wall:7.1f} s")
    print(f"  sum of its variant rounds {rounds:7.1f} s   (the baseline: the rounds' own run times)")
    ratio = wall / rounds if rounds else float("nan")
    print(f"  ratio                     {ratio:7.2f}x   goal <= 1.15x: {'met' if ratio <= 1.15 else 'NOT met'}")


def simulation_part(trials: int) -> None:
    t0 = time.perf_counter()
    seq = simulate_sequential(1.2, max_rounds=8, stop_early_after=3, trials=trials, seed=1)
    fixed: dict[str, Any] = simulate_sequential(1.2, max_rounds=5, stop_early_after=5, trials=trials, seed=1)
    null = simulate_sequential(1.0, max_rounds=8, stop_early_after=3, trials=trials, seed=2)
    print(f"sequential stopping ({trials} simulated trials each, AR(1) rounds, alpha 0.05 over the looks)")
    print(
        f"  20 % slower: median {seq['median_rounds']:.0f} rounds (mean {seq['mean_rounds']:.1f}), declared worse in "
        f"{seq['verdicts']['worse'] / trials:.0%}; Timon's fixed 5 rounds with the same test: worse in "
        f"{fixed['verdicts']['worse'] / trials:.0%} (ratio of rounds {seq['mean_rounds'] / 5:.2f}x)"
    )
    wrong = null["verdicts"]["worse"] + null["verdicts"]["better"]
    print(
        f"  identical:   mean {null['mean_rounds']:.1f} rounds; declared different in {wrong / trials:.1%}, "
        f"same in {null['verdicts']['same'] / trials:.0%}, inconclusive at 8 rounds in "
        f"{null['verdicts']['inconclusive'] / trials:.0%}"
    )
    aa = simulate_aa(rounds=5, paired=False, alpha=0.05, trials=2000, seed=3)
    print("A/A (2000 simulated trials, 5 rounds, alpha 0.05)")
    print(
        f"  one value per round: {aa['false_positive_rate']:.1%} false positives; every sample tested on its own: "
        f"{aa['per_sample_rate']:.1%}" + (
            f" ({aa['per_sample_rate'] / aa['false_positive_rate']:.0f}x)" if aa["false_positive_rate"] else ""
        )
    )
    print(f"  (simulations took {time.perf_counter() - t0:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-trial", action="store_true", help="only the simulations (no stack, no Spark)")
    parser.add_argument("--trials", type=int, default=500, help="simulated trials of the sequential part")
    args = parser.parse_args()
    if not args.no_trial:
        home = Path(tempfile.mkdtemp(prefix="opsflow-bench-trials-"))
        try:
            overhead_part(home)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    simulation_part(args.trials)


if __name__ == "__main__":
    main()
