"""Configuration trials (Timon): variants of a streaming pipeline on the same input, compared with statistics.

A trial definition (:func:`load_definition`, YAML with errors naming file, line and field) names one PySpark
Structured Streaming application, a seeded input (:mod:`config_trials.inputs`: the paper's vehicles with a load
that rises and falls), the variants (Spark configuration and application parameters, one baseline), rounds,
metrics with a direction, an equivalence band and ``critical``, the significance level and optional chaos.

The analysis (:func:`judge`) takes one value per round and metric (:func:`round_value`), tests every variant
against the baseline with an exact Wilcoxon signed-rank (paired rounds) or Mann-Whitney U test, corrects over
variants x metrics with Holm, gives each effect (a ratio to the baseline) a bootstrap interval, and returns a
verdict per metric (better, worse, same, inconclusive, nodata) and a winner that respects the critical metrics.

Pure modules (no I/O): ``definition``, ``inputs``, ``stats``, ``judge``.

Example:
    >>> d = load_definition_text(EXAMPLE_TRIAL_YAML)
    >>> base = [RoundResult(variant="trigger-2s", round=r, values={"latency": 1.0 + r / 100, "throughput": 50.0})
    ...         for r in range(5)]
    >>> slow = [RoundResult(variant="trigger-6s", round=r, values={"latency": 1.5 + r / 100, "throughput": 50.0})
    ...         for r in range(5)]
    >>> report = judge(d, base + slow)
    >>> [(c.metric, c.verdict) for c in report.comparisons], report.winner
    ([('latency', 'worse'), ('throughput', 'same')], 'trigger-2s')
"""

from config_trials.definition import (
    EXAMPLE_TRIAL_YAML,
    Application,
    ChaosAction,
    InputSpec,
    Metric,
    TrialDefinition,
    Variant,
    VehicleProfile,
    load_definition,
    load_definition_text,
)
from config_trials.inputs import records, round_hash, vehicles_at
from config_trials.judge import MetricComparison, RoundResult, TrialReport, VariantOutcome, judge
from config_trials.stats import Comparison, compare, ewma, holm, p_value, round_value, smallest_p, verdict

__all__ = [
    "EXAMPLE_TRIAL_YAML",
    "Application",
    "ChaosAction",
    "Comparison",
    "InputSpec",
    "Metric",
    "MetricComparison",
    "RoundResult",
    "TrialDefinition",
    "TrialReport",
    "Variant",
    "VariantOutcome",
    "VehicleProfile",
    "compare",
    "ewma",
    "holm",
    "judge",
    "load_definition",
    "load_definition_text",
    "p_value",
    "records",
    "round_hash",
    "round_value",
    "smallest_p",
    "vehicles_at",
    "verdict",
]
