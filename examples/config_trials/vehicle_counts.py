"""The trial's application: vehicle types counted per window, a PySpark Structured Streaming job (seed 001 L50-51).

The paper's pipeline (Kafka -> Flink, a count of vehicle types per 5-minute window, written to Cassandra) scaled
to this machine: JSON records dropped into ``--input`` (one file per second by the trial's feeder) are read by
Spark's file source, counted per ``--window`` of their emit time and vehicle type in every micro-batch, and
written to ``--output`` (one JSON file per batch). The variable studied is the trigger (checkpoint) interval.

What it measures, as JSON lines in ``--metrics``:

- ``ready``: the executors are up and the query started (the feeder starts then, so every variant sees its
  input from its first second);
- ``batch``: per micro-batch, right after its results are written, the end-to-end latency of its records
  (write time minus the emit time each record carries): median, 95th percentile, count;
- ``progress``: the query's progress reports (``processedRowsPerSecond``, ``numInputRows``) at the end.

It stops when the file ``--stop`` appears, after processing what has arrived. ``--batch-delay-ms`` adds a fixed
sleep per batch, as a task on an executor (the known slowdown of the trial's tests).

Run: ``spark-submit vehicle_counts.py --input IN --output OUT --metrics M.jsonl --stop STOP --trigger "2 seconds"``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("type", T.StringType()),
        T.StructField("x", T.DoubleType()),
        T.StructField("y", T.DoubleType()),
        T.StructField("speed", T.DoubleType()),
        T.StructField("direction", T.DoubleType()),
        T.StructField("offset", T.DoubleType()),
        T.StructField("emit_ts", T.DoubleType()),
    ]
)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--stop", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--trigger", default="2 seconds")
    parser.add_argument("--window", default="10 seconds")
    parser.add_argument("--batch-delay-ms", type=float, default=0.0)
    return parser.parse_args(argv)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or args.output.parent / "checkpoint"
    spark = SparkSession.builder.appName("vehicle-counts").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    metrics = args.metrics.open("a", buffering=1)

    def record(kind: str, **fields: Any) -> None:
        metrics.write(json.dumps({"kind": kind, "t": time.time(), **fields}) + "\n")

    def sink(batch: DataFrame, batch_id: int) -> None:
        """One micro-batch: count, write, then measure (batch -1 is the warm-up: neither written nor measured)."""
        batch = batch.persist()
        window = F.window(F.col("emit_ts").cast("timestamp"), args.window)
        if args.batch_delay_ms:
            # On an executor, not the driver: a sleeping driver absorbs an executor's outage (its replacement
            # starts while the driver sleeps), so the slowdown would vanish in exactly the rounds with chaos. A
            # task's sleep is lost with its executor and paid again on the replacement.
            spark.sparkContext.parallelize([args.batch_delay_ms / 1000], 1).foreach(time.sleep)
        counts = batch.groupBy(window.alias("window"), "type").count().collect()
        rows = [
            {"start": str(r["window"]["start"]), "type": r["type"], "count": r["count"]}
            for r in sorted(counts, key=lambda r: (r["window"]["start"], r["type"]))
        ]
        if batch_id >= 0:
            (args.output / f"batch-{batch_id:06d}.json").write_text(json.dumps(rows))
        written = time.time()
        emitted = [r["emit_ts"] for r in batch.select("emit_ts").collect()]
        batch.unpersist()
        if emitted and batch_id >= 0:
            latencies = sorted(written - e for e in emitted)
            record(
                "batch",
                batch_id=batch_id,
                rows=len(latencies),
                latency_median=percentile(latencies, 0.5),
                latency_p95=percentile(latencies, 0.95),
            )

    if not spark.sparkContext.getConf().contains("spark.sql.shuffle.partitions"):
        # Spark's default of 200 shuffle partitions turns every small micro-batch into 200 tasks: on two cores
        # that, not the trigger, would decide the latency. A variant may set its own.
        spark.conf.set("spark.sql.shuffle.partitions", "2")
    # Start the executors and pay for the sink's code generation and class loading on one static record before
    # the query starts: otherwise the feed's first seconds wait for them (5 s here on two cores).
    warm = {"id": 0, "type": "car", "x": 0.0, "y": 0.0, "speed": 0.0, "direction": 0.0, "offset": 0.0}
    sink(spark.createDataFrame([{**warm, "emit_ts": time.time()}], SCHEMA), -1)
    query = (
        spark.readStream.schema(SCHEMA)
        .json(str(args.input))
        .writeStream.trigger(processingTime=args.trigger)
        .option("checkpointLocation", str(checkpoint))
        .foreachBatch(sink)
        .start()
    )
    record("ready", app_id=spark.sparkContext.applicationId)
    while query.isActive and not args.stop.exists():
        time.sleep(0.2)
    if query.isActive:
        query.processAllAvailable()
    for p in query.recentProgress:
        record(
            "progress",
            timestamp=p["timestamp"],
            rows=p["numInputRows"],
            processed_per_s=p["processedRowsPerSecond"],
            input_per_s=p["inputRowsPerSecond"],
        )
    error = query.exception()
    query.stop()
    spark.stop()
    if error is not None:
        raise SystemExit(f"the query failed: {error}")


if __name__ == "__main__":
    main()
