"""The thesis's Auto-Scaler experiment (seed §7.5, Tables 7.2 and 7.3) on the local Spark cluster.

Run: `.venv/bin/python benchmarks/autoscale.py --thesis-table` (about 20 minutes; ``--iterations 1 --rows 20000``
is the short run CI does; ``--benchmark regression`` or ``both``; see ``--help``).

The thesis trained XGBoost models on CPU workers (classification on Fannie Mae's loan data, regression on taxi
fares), 10 iterations on 2 static workers and 10 under its Auto-Scaler with the Table 7.2 parameters (interval
5 s, recurrence factor 1, cooldown 60 s, CPU target 10 %, thresholds 5 % / 25 %, 2..15 workers for
classification), and measured the Auto-Scaler *slower*: classification 1,080 s mean against 828 s on 2 static
workers (Table 7.3, Figure 7.4). Here, as close as this machine allows:

- **The job** (:data:`JOB_SCRIPT`): Spark MLlib's gradient-boosted trees (``GBTClassifier`` / ``GBTRegressor``, the
  algorithm family of XGBoost, whose Spark library is not on PyPI) trained on generated data with a known rule:
  8 uniform features; the class is ``x0 + x1·x2 > 0.75`` with 5 % of the labels flipped, the regression target
  ``3·x0 + 2·x1·x2 - x3`` plus Gaussian noise (standard deviation 0.1). The data is cached in
  :data:`PARTITIONS` partitions (the parallelism of the training, as XGBoost's ``num_workers`` fixes it); the
  model is checked on a held-out 20 % (AUC ≥ 0.9, R² ≥ 0.8): an iteration whose model is wrong, or whose job
  fails, counts as FAILED.
- **2 static**: the thesis's reference, 2 one-core workers.
- **thesis**: its Auto-Scaler (``policy: thesis``, :func:`spark_scaler.config.thesis_policy`) with Table 7.2 as
  printed, except the upper bound, scaled to this machine's cores: 15 → :data:`MAX_WORKERS` one-core workers
  (twice the 2 cores; more would only add JVMs). The metric is the thesis's, CPU utilisation through Prometheus
  (:func:`spark_scaler.metrics.cpu_query`: the executors' and PySpark workers' CPU per core of the ALIVE workers;
  at the 2-worker minimum on this 2-core machine that is the host's CPU share, the unit of the thesis's
  percentages), over a 15 s rate window (three scrapes) so that one iteration's load has left the metric before
  the next begins.
- **ours**: ``policy: opsflow`` with the settings shipped in ``examples/spark_scaler/autoscaler.yaml`` (the same
  CPU metric at target 0.5, thresholds 0.2 / 0.6, n = 2, cooldown 15 s, tolerance 0.1, warm-up 10 s, demand
  signals, graceful scale-in) and the same bounds 2..4.
- **ours-7.2** (``--policies "2 static,ours-7.2"``): our switches on Table 7.2's numbers, which tells the part of
  the policy from the part of the configuration.

Each iteration submits the job once to a cluster settled at 2 ALIVE workers (and, for the scalers, a metric back
at or below its lower threshold); the policies interleave (iteration i runs each once, in a rotated order), so
the machine's slow minutes hit all of them alike. Printed: Table 7.3's columns (time, max nodes during the
execution) per iteration, then per policy the mean, standard deviation and range, the mean as a ratio to 2
static, and worker-seconds (∫ Worker processes running over the job).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoscale import Controller, Sampler, converge, integral, rotated

from opsflow.adapters.prometheus import PrometheusAPI, PrometheusError
from opsflow.adapters.spark import JOB_JVM_FLAGS, SparkMaster
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.prometheus import PrometheusComponent
from opsflow.stack.spark import SparkComponent, local_worker_backend
from spark_scaler.config import ScalerConfig, load_config_text
from spark_scaler.metrics import cpu_query

PORT_OFFSET = 27000
MIN_WORKERS = 2
#: Table 7.2's 15 (classification) and 10 (regression) scaled to this machine: twice its 2 cores.
MAX_WORKERS = 4
PARTITIONS = 4
RATE_WINDOW = "15s"
ITERATION_TIMEOUT_S = 600.0
RESULT_MARKER = "THESIS_RESULT "
#: Thesis Table 7.3 (and Table 7.1 for 2 static workers): mean seconds, for the comparison line.
THESIS_MEANS = {"classification": (828.0, 1056.0), "regression": (139.0, 177.0)}

JOB_SCRIPT = f"""\
import json, sys, time
from pyspark.sql import SparkSession, functions as F
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.classification import GBTClassifier
from pyspark.ml.regression import GBTRegressor
from pyspark.ml.evaluation import BinaryClassificationEvaluator, RegressionEvaluator

kind, rows, partitions, trees, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
spark = SparkSession.builder.appName(name).getOrCreate()
try:
    df = spark.range(rows, numPartitions=partitions)
    features = [f"x{{i}}" for i in range(8)]
    for i, col in enumerate(features):
        df = df.withColumn(col, F.rand(seed=i + 1))
    if kind == "classification":
        clean = (F.col("x0") + F.col("x1") * F.col("x2") > 0.75).cast("double")
        label = F.when(F.rand(seed=99) < 0.05, 1.0 - clean).otherwise(clean)
    else:
        label = 3 * F.col("x0") + 2 * F.col("x1") * F.col("x2") - F.col("x3") + 0.1 * F.randn(seed=99)
    data = VectorAssembler(inputCols=features, outputCol="features").transform(df.withColumn("label", label))
    train, test = data.select("features", "label").randomSplit([0.8, 0.2], seed=7)
    train = train.repartition(partitions).cache()
    train.count()
    if kind == "classification":
        model = GBTClassifier(maxIter=trees, maxDepth=5, seed=1).fit(train)
        score = BinaryClassificationEvaluator(metricName="areaUnderROC").evaluate(model.transform(test))
    else:
        model = GBTRegressor(maxIter=trees, maxDepth=5, seed=1).fit(train)
        score = RegressionEvaluator(metricName="r2").evaluate(model.transform(test))
    print({RESULT_MARKER!r} + json.dumps({{"score": score}}), flush=True)
finally:
    spark.stop()
"""
#: The least held-out score of a correct model: AUC for classification, R² for regression.
MIN_SCORE = {"classification": 0.9, "regression": 0.8}


def thesis_yaml(stack: StackConfig, benchmark: str) -> str:
    """Table 7.2 in the thesis's own file format (the ``opsflow:`` keys only say where the local cluster is).

    >>> "recurrence_factor: 1" in thesis_yaml(StackConfig(home=Path("/tmp/x")), "classification")
    True
    """
    target, low, high = (0.10, 0.05, 0.25) if benchmark == "classification" else (0.05, 0.02, 0.10)
    return f"""\
general:
  interval_seconds: 5
  cooldown_period_seconds: 60
  recurrence_factor: 1
  prometheus_url: "{stack.prometheus_url}"
metrics:
  cpu:
    query: '{cpu_query(1, RATE_WINDOW)}'
    target_utilization: {target}
    thresholds: {{min: {low}, max: {high}}}
worker:
  service_name: spark-worker
  thresholds: {{min: {MIN_WORKERS}, max: {MAX_WORKERS}}}
opsflow:
  policy: thesis
  backend: local
  spark_master_ui_url: "{stack.spark_master_ui_url}"
  spark_master_url: "{stack.spark_master_url}"
"""


OUR_SWITCHES = """\
  cores_per_worker: 1
  scale_in: graceful
  tolerance: 0.1
  scale_up_stabilization_seconds: 0
  scale_down_stabilization_seconds: 0
  warmup_seconds: 10
  demand_signals: true
"""


def ours_yaml(stack: StackConfig) -> str:
    """Our policy with the settings of examples/spark_scaler/autoscaler.yaml, bounds 2..4.

    >>> "policy: opsflow" in ours_yaml(StackConfig(home=Path("/tmp/x")))
    True
    """
    return (
        f"""\
general:
  interval_seconds: 5
  cooldown_period_seconds: 15
  recurrence_factor: 2
  prometheus_url: "{stack.prometheus_url}"
metrics:
  cpu:
    query: '{cpu_query(1, RATE_WINDOW)}'
    target_utilization: 0.5
    thresholds: {{min: 0.2, max: 0.6}}
worker:
  service_name: spark-worker
  thresholds: {{min: {MIN_WORKERS}, max: {MAX_WORKERS}}}
opsflow:
  policy: opsflow
  backend: local
  spark_master_ui_url: "{stack.spark_master_ui_url}"
  spark_master_url: "{stack.spark_master_url}"
"""
        + OUR_SWITCHES
    )


def ours_with_table_72(stack: StackConfig, benchmark: str) -> str:
    """Our switches on Table 7.2's numbers (``ours-7.2``): tells the policy's part from the configuration's.

    >>> text = ours_with_table_72(StackConfig(home=Path("/tmp/x")), "classification")
    >>> "policy: opsflow" in text and "max: 0.25" in text
    True
    """
    return thesis_yaml(stack, benchmark).replace("  policy: thesis\n", "  policy: opsflow\n") + OUR_SWITCHES


@dataclass
class Iteration:
    """One submit of the job under one policy: Table 7.3's time and max nodes, plus what we add."""

    policy: str
    benchmark: str
    time_s: float
    max_nodes: int
    worker_s: float
    score: float | None
    failed: str | None = None
    actions: list[str] = field(default_factory=list)


def job_argv(spark: SparkComponent, script: Path, benchmark: str, rows: int, trees: int, name: str) -> list[str]:
    """spark-submit of the training job: one-core executors, no UI, the small JVM flags of the check job."""
    conf = {
        "spark.ui.enabled": "false",
        "spark.executor.cores": "1",
        "spark.executor.memory": "512m",
        "spark.driver.memory": "768m",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.extraJavaOptions": JOB_JVM_FLAGS,
        "spark.executor.extraJavaOptions": JOB_JVM_FLAGS,
        "spark.pyspark.driver.python": sys.executable,
        "spark.pyspark.python": sys.executable,
    }
    argv = [f"{spark.spark_home}/bin/spark-submit", "--master", spark.cfg.spark_master_url]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, str(script), benchmark, str(rows), str(PARTITIONS), str(trees), name]


def read_score(out: Path) -> float | None:
    """The held-out score the job printed, or None."""
    for line in reversed(out.read_text(errors="replace").splitlines()):
        if line.startswith(RESULT_MARKER):
            return float(json.loads(line[len(RESULT_MARKER) :])["score"])
    return None


def settle(api: PrometheusAPI | None, query: str | None, at_most: float, within_s: float = 90.0) -> None:
    """Wait until the scaler's metric reads at or below ``at_most`` (the previous job's CPU has left its window)."""
    if api is None or query is None:
        return
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with contextlib.suppress(PrometheusError, IndexError):
            if api.query(query)[0].value <= at_most:
                return
        time.sleep(2.0)
    raise RuntimeError(f"the CPU metric stayed above {at_most} for {within_s:.0f} s with no job running")


def run_iteration(
    policy: str,
    cfg: ScalerConfig | None,
    benchmark: str,
    spark: SparkComponent,
    api: PrometheusAPI,
    workdir: Path,
    rows: int,
    trees: int,
) -> Iteration:
    """Settle the cluster at 2 workers, submit the job once, with the policy's scaler running beside it."""
    backend = local_worker_backend(spark.cfg, spark.env)
    master = SparkMaster(spark.cfg.spark_master_ui_url, timeout_s=2.0)
    converge(backend, master, MIN_WORKERS)
    if cfg is not None:
        (metric,) = cfg.metrics.values()
        settle(api, metric.query, metric.thresholds.min)
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "train.py"
    script.write_text(JOB_SCRIPT)
    out, err = workdir / "job.out", workdir / "job.err"
    env = {**spark.env, "SPARK_CONF_DIR": str(spark.conf_dir)}
    sampler = Sampler(backend, master)
    sampler.start()
    t0 = time.monotonic()
    controller = Controller(cfg, backend, master, t0, api) if cfg is not None else None
    if controller is not None:
        controller.start()
    failed: str | None = None
    try:
        argv = job_argv(spark, script, benchmark, rows, trees, f"{benchmark}-{policy}")
        with out.open("wb") as fo, err.open("wb") as fe:
            try:
                code = subprocess.run(
                    argv, env=env, cwd=workdir, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                    timeout=ITERATION_TIMEOUT_S, check=False,
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                code, failed = -1, f"still running after {ITERATION_TIMEOUT_S:.0f} s"
        end = time.monotonic() - t0
    finally:
        if controller is not None:
            controller.stopped.set()
            controller.join(timeout=240)
        sampler.stopped.set()
        sampler.join(timeout=10)
    score = read_score(out)
    if failed is None and code != 0:
        tail = " | ".join(err.read_text(errors="replace").splitlines()[-3:])
        failed = f"spark-submit exited with {code}: {tail}"
    elif failed is None and (score is None or score < MIN_SCORE[benchmark]):
        failed = f"held-out score {score} below {MIN_SCORE[benchmark]}"
    running = [(t - t0, n) for t, n in sampler.running]
    return Iteration(
        policy=policy,
        benchmark=benchmark,
        time_s=end,
        max_nodes=max((n for t, n in running if t <= end), default=0),
        worker_s=integral(running, 0.0, end),
        score=score,
        failed=failed,
        actions=controller.actions if controller else [],
    )


def summary_rows(results: Sequence[Iteration], policies: Sequence[str]) -> list[str]:
    """Per policy: mean, standard deviation and range of the time, its ratio to 2 static, nodes, worker-seconds.

    >>> rows = summary_rows([Iteration("2 static", "c", 10.0, 2, 20.0, 0.95),
    ...                      Iteration("2 static", "c", 12.0, 2, 24.0, 0.95),
    ...                      Iteration("thesis", "c", 16.5, 4, 50.0, 0.95)], ["2 static", "thesis"])
    >>> print(rows[1])
    thesis       1     16.5      0.0    16.5-16.5     1.50x      4   4..4        50      0
    """
    base = [r.time_s for r in results if r.policy == policies[0] and not r.failed]
    base_mean = statistics.fmean(base) if base else float("nan")
    rows = []
    for policy in policies:
        mine = [r for r in results if r.policy == policy]
        ok = [r for r in mine if not r.failed]
        times = [r.time_s for r in ok] or [float("nan")]
        sd = statistics.stdev(times) if len(times) > 1 else 0.0
        nodes = [r.max_nodes for r in ok] or [0]
        rows.append(
            f"{policy:<10} {len(ok):3d} {statistics.fmean(times):8.1f} {sd:8.1f} {min(times):7.1f}-{max(times):<4.1f}"
            f" {statistics.fmean(times) / base_mean:8.2f}x {max(nodes):6d} {min(nodes):3d}..{max(nodes):<3d}"
            f" {statistics.median(r.worker_s for r in ok) if ok else float('nan'):7.0f} {len(mine) - len(ok):6d}"
        )
    return rows


def cell(it: Iteration | None) -> str:
    """One iteration as Table 7.3 prints it: time / max nodes.

    >>> cell(Iteration("thesis", "classification", 61.04, 4, 200.0, 0.97))
    '  61.0 s /  4'
    """
    if it is None:
        return "-"
    return f"{'FAILED' if it.failed else f'{it.time_s:6.1f} s'} / {it.max_nodes:>2}"


def print_tables(results: Sequence[Iteration], policies: Sequence[str], benchmark: str, iterations: int) -> None:
    print()
    print(f"{benchmark}: Table 7.3's columns, time (s) and max nodes during the execution, per iteration")
    print(f"{'iteration':>9} " + " ".join(f"{p:>14}" for p in policies))
    for i in range(iterations):
        cells = []
        for p in policies:
            mine = [r for r in results if r.policy == p]
            cells.append(cell(mine[i] if i < len(mine) else None))
        print(f"{i + 1:>9} " + " ".join(f"{c:>14}" for c in cells))
    print()
    print(f"{'policy':<10} {'ok':>3} {'mean s':>8} {'sd s':>8} {'range s':>12} {'x static':>9} {'nodes':>6} "
          f"{'range':>6} {'worker-s':>7} {'failed':>6}")  # fmt: skip
    for row in summary_rows(results, policies):
        print(row)
    static, auto = THESIS_MEANS[benchmark]
    print(f"thesis (Table 7.1/7.3, 10 iterations): 2 static {static:.0f} s, Auto-Scaler {auto:.0f} s = "
          f"{auto / static:.2f}x")  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="autoscale.py --thesis-table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", choices=["classification", "regression", "both"], default="classification")
    parser.add_argument("--iterations", type=int, default=10, help="submits per policy (the thesis: 10)")
    parser.add_argument("--rows", type=int, default=200_000, help="generated training rows (default 200000)")
    parser.add_argument("--trees", type=int, default=10, help="boosting iterations of the model (default 10)")
    parser.add_argument(
        "--policies",
        default="2 static,thesis,ours",
        help="comma-separated, in order, from '2 static' (first, always), thesis, ours, ours-7.2 (our switches on "
        "Table 7.2's numbers)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every scaling action with its reason")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.rows < 1000 or args.trees < 1:
        parser.error("--iterations and --trees must be at least 1, --rows at least 1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    benchmarks = ["classification", "regression"] if args.benchmark == "both" else [args.benchmark]
    home = Path(tempfile.mkdtemp(prefix="opsflow-thesis-table-"))
    stack = StackConfig(home=home, spark_workers=MIN_WORKERS, spark_worker_cores=1).shifted(PORT_OFFSET)
    stack.save()
    env = child_env(stack)
    spark, prometheus = SparkComponent(stack, env), PrometheusComponent(stack, env)
    api = PrometheusAPI(stack.prometheus_url, timeout_s=3.0)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = sorted(set(policies) - {"2 static", "thesis", "ours", "ours-7.2"})
    if unknown or not policies or policies[0] != "2 static":
        print(f"--policies: from '2 static', thesis, ours, ours-7.2; '2 static' first (got {args.policies!r})")
        return 2
    print(f"home {home}; {args.iterations} iteration(s) of {', '.join(benchmarks)}; {args.rows} rows, "
          f"{args.trees} trees, {PARTITIONS} partitions; workers {MIN_WORKERS}..{MAX_WORKERS}", flush=True)  # fmt: skip
    results: dict[str, list[Iteration]] = {b: [] for b in benchmarks}
    started = time.monotonic()
    try:
        spark.start()
        prometheus.start()
        for benchmark in benchmarks:
            configs = {
                "2 static": None,
                "thesis": load_config_text(thesis_yaml(stack, benchmark), "Table 7.2"),
                "ours": load_config_text(ours_yaml(stack), "examples/spark_scaler/autoscaler.yaml"),
                "ours-7.2": load_config_text(ours_with_table_72(stack, benchmark), "Table 7.2 + our switches"),
            }
            for i in range(args.iterations):
                for policy in rotated(policies, i):
                    run_dir = home / "runs" / benchmark / f"{i + 1:02d}-{policy.replace(' ', '-')}"
                    it = run_iteration(policy, configs[policy], benchmark, spark, api, run_dir, args.rows, args.trees)
                    results[benchmark].append(it)
                    print(f"{benchmark} iteration {i + 1} {policy}: {it.time_s:.1f} s, max {it.max_nodes} nodes, "
                          f"score {it.score}, {len(it.actions)} actions"
                          + (f" FAILED: {it.failed}" if it.failed else ""), flush=True)  # fmt: skip
                    if args.verbose:
                        for line in it.actions:
                            print(f"    {line}")
    finally:
        prometheus.stop()
        spark.stop()
    for benchmark in benchmarks:
        print_tables(results[benchmark], policies, benchmark, args.iterations)
    print(f"\nwhole run {time.monotonic() - started:.0f} s. Limitation: 2 CPU cores; MLlib GBT instead of XGBoost; "
          "generated data; 4 workers at most.")  # fmt: skip
    return 1 if any(r.failed for rs in results.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
