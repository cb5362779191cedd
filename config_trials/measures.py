"""What a variant's round measured, from its raw records to one value per metric; the order of a round (pure).

Rules (seed 001 L75, L78; S1 of :mod:`config_trials.stats`):

- M1 latency: per micro-batch, the median end-to-end latency of its records (written - emitted), as the
  application reports it right after the batch's results are written; throughput: the query progress's
  ``processedRowsPerSecond``; cpu: the share of one core used by the variant's processes (driver and
  executors); memory: their resident set, in MiB. Each sample is placed by its time since the feed started.
- M2 a round's value of a metric is the median of its samples after the warm-up (:func:`round_value`).
- M3 sequential mode runs the variants of a round one after another in an order drawn from ``(seed, round)``:
  each variant is as often early as late, and a rerun draws the same orders.
- M4 the command of a variant's application: the trial's arguments, then the variant's parameters as
  ``--name value``, then the runner's own paths; Spark settings as ``--conf`` (the variant's last).
- M5 parallel mode runs every live variant at once, so the cluster must grant all of them their executors at
  the same time (``spark.cores.max`` cores and ``spark.executor.memory`` each): a round that would leave one
  waiting for a free core is not started (:func:`parallel_shortfall`).

Example:
    >>> events = [{"kind": "batch", "t": 100.5, "latency_median": 1.2}, {"kind": "batch", "t": 112.0,
    ...           "latency_median": 0.8}, {"kind": "batch", "t": 114.0, "latency_median": 1.0}]
    >>> round_values(events, [], feed_started=100.0, warmup_s=10)["latency"]
    0.9
    >>> round_order(["a", "b", "c"], seed=1, round_index=0) == round_order(["a", "b", "c"], seed=1, round_index=0)
    True
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from config_trials.definition import TrialDefinition, Variant
from config_trials.stats import round_value


def _epoch(timestamp: str) -> float:
    """A progress report's ISO timestamp (``2026-12-02T03:30:00.123Z``) in seconds since the epoch."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def samples(
    events: Sequence[Mapping[str, Any]], usage: Sequence[tuple[float, float, float]], feed_started: float
) -> dict[str, list[tuple[float, float]]]:
    """M1: ``(seconds since the feed started, value)`` per metric; ``usage`` is ``(time, cpu share, rss MiB)``.

    >>> samples([{"kind": "progress", "t": 0, "timestamp": "1970-01-01T00:00:12Z", "processed_per_s": 50.0}],
    ...         [(11.0, 0.5, 300.0)], feed_started=10.0)
    {'latency': [], 'throughput': [(2.0, 50.0)], 'cpu': [(1.0, 0.5)], 'memory': [(1.0, 300.0)]}
    """
    out: dict[str, list[tuple[float, float]]] = {"latency": [], "throughput": [], "cpu": [], "memory": []}
    for e in events:
        if e.get("kind") == "batch" and e.get("latency_median") is not None:
            out["latency"].append((float(e["t"]) - feed_started, float(e["latency_median"])))
        elif e.get("kind") == "progress" and e.get("processed_per_s") is not None and e.get("timestamp"):
            out["throughput"].append((_epoch(str(e["timestamp"])) - feed_started, float(e["processed_per_s"])))
    for at, cpu, rss in usage:
        out["cpu"].append((at - feed_started, cpu))
        out["memory"].append((at - feed_started, rss))
    return out


def round_values(
    events: Sequence[Mapping[str, Any]],
    usage: Sequence[tuple[float, float, float]],
    feed_started: float,
    warmup_s: float,
) -> dict[str, float | None]:
    """M2: one value per metric (None: no sample after the warm-up)."""
    return {m: round_value(s, warmup_s) for m, s in samples(events, usage, feed_started).items()}


def round_order(names: Sequence[str], seed: int, round_index: int) -> list[str]:
    """M3: the order the variants of round ``round_index`` run in (sequential mode)."""
    order = list(names)
    random.Random(f"{seed}:order:{round_index}").shuffle(order)
    return order


def memory_mib(size: str) -> int:
    """A Spark memory setting (``512m``, ``2g``, ``1t``; a bare number is MiB, as for executors) in MiB.

    >>> memory_mib("512m"), memory_mib("2g"), memory_mib("1024")
    (512, 2048, 1024)
    """
    text = size.strip().lower().removesuffix("b")
    scale = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    if text and text[-1] in scale:
        return int(float(text[:-1]) * scale[text[-1]])
    return int(float(text))


def parallel_shortfall(
    definition: TrialDefinition, base_conf: Mapping[str, str], free_cores: int, free_memory_mib: int
) -> str | None:
    """M5: why a parallel round cannot get every variant its executors at once (None: it can, or sequential).

    >>> from config_trials.definition import EXAMPLE_TRIAL_YAML, load_definition_text
    >>> d = load_definition_text(EXAMPLE_TRIAL_YAML.replace("mode: sequential", "mode: parallel"))
    >>> parallel_shortfall(d, {"spark.executor.memory": "512m"}, free_cores=1, free_memory_mib=4096)
    'parallel mode runs 2 applications at once: they need 2 cores and 1024 MiB of executors, the workers have \
1 cores and 4096 MiB free'
    >>> parallel_shortfall(d, {"spark.executor.memory": "512m"}, free_cores=2, free_memory_mib=1024) is None
    True
    """
    if definition.mode != "parallel":
        return None
    cores = memory = 0
    for variant in definition.variants:
        conf = {**base_conf, **variant.spark}
        app_cores = int(conf.get("spark.cores.max", "1"))
        # standalone: without spark.executor.cores an application gets one executor with all its cores
        executors = math.ceil(app_cores / int(conf.get("spark.executor.cores", app_cores)))
        cores += app_cores
        memory += executors * memory_mib(conf.get("spark.executor.memory", "1g"))
    if cores <= free_cores and memory <= free_memory_mib:
        return None
    return (
        f"parallel mode runs {len(definition.variants)} applications at once: they need {cores} cores and "
        f"{memory} MiB of executors, the workers have {free_cores} cores and {free_memory_mib} MiB free"
    )


def application_argv(
    spark_submit: str,
    master: str,
    definition: TrialDefinition,
    variant: Variant,
    module: str,
    paths: Mapping[str, str],
    base_conf: Mapping[str, str],
) -> list[str]:
    """M4: the ``spark-submit`` argument list of one variant's round (never a shell string).

    >>> from config_trials.definition import EXAMPLE_TRIAL_YAML, load_definition_text
    >>> d = load_definition_text(EXAMPLE_TRIAL_YAML)
    >>> application_argv("spark-submit", "spark://h:7077", d, d.variants[1], "/x/app.py", {"input": "/in"},
    ...                  {"spark.ui.enabled": "false"})  # doctest: +NORMALIZE_WHITESPACE
    ['spark-submit', '--master', 'spark://h:7077', '--name', 'trial-checkpoint-interval-trigger-6s',
     '--conf', 'spark.ui.enabled=false', '/x/app.py', '--window', '10 seconds', '--trigger', '6 seconds',
     '--input', '/in']
    """
    conf = {**base_conf, **variant.spark}
    if definition.mode == "parallel":
        conf.setdefault("spark.cores.max", "1")  # D6: each replica capped, all at once
    argv = [spark_submit, "--master", master, "--name", f"trial-{definition.name}-{variant.name}"]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    argv += [module, *definition.application.arguments]
    for name, value in variant.parameters.items():
        argv += [f"--{name.replace('_', '-')}", value]
    for name, value in paths.items():
        argv += [f"--{name}", value]
    return argv
