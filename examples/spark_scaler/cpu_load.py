"""A CPU-bound PySpark job: ``partitions`` tasks that each keep one core busy for ``seconds``.

The load the auto-scaler reacts to (the demo, the end-to-end test). Its CPU is spent in PySpark's Python
workers, which the local stack's process exporter counts in the ``spark-python`` group.

Example (on the local stack, whose spark-defaults.conf names the master):
    $ $SPARK_HOME/bin/spark-submit examples/spark_scaler/cpu_load.py 8 20
"""

from __future__ import annotations

import sys
import time


def burn(seconds: float) -> int:
    """Spin for ``seconds`` of wall time; the count only keeps the loop from being optimised away."""
    end = time.time() + seconds
    count = 0
    while time.time() < end:
        count += 1
    return count


def main(argv: list[str]) -> None:
    from pyspark.sql import SparkSession

    partitions, seconds = int(argv[1]), float(argv[2])  # read on the driver: executors see other argv
    spark = SparkSession.builder.appName("opsflow-cpu-load").getOrCreate()
    try:
        n = spark.sparkContext.parallelize(range(partitions), partitions).map(lambda _: burn(seconds)).count()
        print(f"cpu_load: {n} tasks of {seconds:.0f} s done in {spark.sparkContext.applicationId}", flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv)
