"""Train a loan-default classifier with Spark MLlib and write ``metrics.json`` and ``model/``.

Run it with ``spark-submit`` (client mode; the master comes from ``--master``, never from this file)::

    spark-submit --master spark://127.0.0.1:7077 --deploy-mode client train.py --rows 2000

The job generates a seeded synthetic loan book (:mod:`loans`) on the driver, splits it 80/20, fits a
``Pipeline`` of ``VectorAssembler`` -> ``StandardScaler`` -> ``LogisticRegression`` on the larger part, and
evaluates accuracy and the area under the ROC curve on the held-out part. It then saves the fitted pipeline to
``--model-dir`` (default ``model``), writes ``--metrics`` (default ``metrics.json``) atomically and prints one
``metrics {...}`` line. ``--fail`` raises once the Spark session is up, to exercise a failing training.

The application name is left to ``spark-submit --name`` (opsflow names each run after its flow run, and finds
the application by that name on the master). Only this module's :func:`train` imports PySpark, so
``write_metrics`` and ``parse_args`` are testable without it.

Example:
    >>> args = parse_args(["--rows", "500", "--seed", "3"])
    >>> args.rows, args.seed, args.metrics, args.model_dir, args.fail
    (500, 3, 'metrics.json', 'model', False)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from loans import FEATURES, generate

#: The smallest data set whose 20 % test split still holds both classes reliably.
MIN_ROWS = 50
#: Few, cheap iterations: the job must finish in seconds on a two-core machine.
MAX_ITER = 20


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of the job (see ``--help``)."""
    parser = argparse.ArgumentParser(description="Train a loan-default classifier on synthetic data (Spark MLlib).")
    parser.add_argument("--rows", type=int, default=2000, help="number of generated loans (default 2000)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the data and the split (default 42)")
    parser.add_argument("--metrics", default="metrics.json", help="where to write the metrics (JSON)")
    parser.add_argument("--model-dir", default="model", help="where to save the fitted pipeline (a path or URI)")
    parser.add_argument("--fail", action="store_true", help="raise after the Spark session starts (for tests)")
    args = parser.parse_args(argv)
    if args.rows < MIN_ROWS:
        parser.error(f"--rows must be at least {MIN_ROWS}, got {args.rows}")
    return args


def write_metrics(path: Path, metrics: Mapping[str, float | int]) -> None:
    """Write ``metrics`` as JSON to ``path`` atomically: a temporary file beside it, fsync, rename.

    A reader sees the old file or the new one, never half of one; parent directories are created.

    >>> d = Path(tempfile.mkdtemp())
    >>> write_metrics(d / "m.json", {"accuracy": 0.5, "rows": 10})
    >>> json.loads((d / "m.json").read_text())
    {'accuracy': 0.5, 'rows': 10}
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(metrics), indent=2, sort_keys=True, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _model_uri(model_dir: str) -> str:
    """A plain path becomes an absolute ``file:`` URI (so executors and the default file system agree on it)."""
    if "://" in model_dir:
        return model_dir
    return Path(model_dir).resolve().as_uri()


def train(rows: int, seed: int, metrics_path: Path, model_dir: str, *, fail: bool = False) -> dict[str, float | int]:
    """Generate the data, fit and evaluate the pipeline, save the model and the metrics; returns the metrics."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator
    from pyspark.ml.feature import StandardScaler, VectorAssembler
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.config("spark.sql.shuffle.partitions", "2").getOrCreate()
    try:
        if fail:
            raise RuntimeError("training failed on purpose (--fail)")
        schema = ", ".join([*(f"{name} double" for name in FEATURES), "label double"])
        data = spark.createDataFrame([tuple(float(v) for v in loan) for loan in generate(rows, seed)], schema)
        # Cached once: every pass of the fit would otherwise pickle the rows through Python workers again.
        train_set, test_set = (part.cache() for part in data.randomSplit([0.8, 0.2], seed=seed))
        pipeline = Pipeline(
            stages=[
                VectorAssembler(inputCols=list(FEATURES), outputCol="raw_features"),
                StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True),
                LogisticRegression(featuresCol="features", labelCol="label", maxIter=MAX_ITER, regParam=0.01),
            ]
        )
        started = time.monotonic()
        model = pipeline.fit(train_set)
        train_seconds = time.monotonic() - started
        predictions = model.transform(test_set).cache()
        auc = BinaryClassificationEvaluator(labelCol="label", metricName="areaUnderROC").evaluate(predictions)
        accuracy = MulticlassClassificationEvaluator(labelCol="label", metricName="accuracy").evaluate(predictions)
        model.write().overwrite().save(_model_uri(model_dir))
        metrics: dict[str, float | int] = {
            "accuracy": round(accuracy, 4),
            "auc": round(auc, 4),
            "rows": rows,
            "train_seconds": round(train_seconds, 3),
        }
        write_metrics(metrics_path, metrics)
        return metrics
    finally:
        spark.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    metrics = train(args.rows, args.seed, Path(args.metrics), args.model_dir, fail=args.fail)
    print("metrics " + json.dumps(metrics, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
