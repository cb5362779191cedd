"""From a trial's raw rounds to verdicts and a winner (pure): the analysis ``opsflow trials report`` reruns.

Rules (on top of :mod:`config_trials.stats`, S1-S6):

- J1 a round counts for a variant when it completed; a variant whose round failed is FAILED with that round's
  reason, and the others go on (a crashed variant is never the winner, and never stops the trial).
- J2 paired rounds: only rounds where both the baseline and the variant have a value are compared.
- J3 no data: a metric without a value in half of a variant's completed rounds or more fails the variant
  ("no data"); below that, the rounds without one are dropped (Kayenta's ``nanStrategy: remove``).
- J4 a variant is disqualified by a **worse** verdict on a critical metric.
- J5 the winner: of the variants neither FAILED nor disqualified (the baseline included), the one with the most
  "better" minus "worse" verdicts; ties go to the baseline, then to the better effect on the first metric.
- J6 sequential mode is decided when every comparison is better, worse or same (none inconclusive); the
  runner stops then, or at ``rounds``.

Example:
    >>> from config_trials.definition import EXAMPLE_TRIAL_YAML, load_definition_text
    >>> d = load_definition_text(EXAMPLE_TRIAL_YAML)
    >>> fast = [RoundResult(variant="trigger-2s", round=r, values={"latency": 1.0 + r / 100, "throughput": 100.0})
    ...         for r in range(5)]
    >>> slow = [RoundResult(variant="trigger-6s", round=r, values={"latency": 3.0 + r / 90, "throughput": 100.0})
    ...         for r in range(5)]
    >>> report = judge(d, fast + slow)
    >>> [(c.variant, c.metric, c.verdict) for c in report.comparisons]
    [('trigger-6s', 'latency', 'worse'), ('trigger-6s', 'throughput', 'same')]
    >>> report.winner, report.variants["trigger-6s"].status
    ('trigger-2s', 'disqualified')
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from config_trials.definition import TrialDefinition
from config_trials.stats import Verdict, compare, holm, look_alpha, verdict


class RoundResult(BaseModel):
    """One variant's round: its per-metric round value (S1) or why it failed; the input hash it read (D2)."""

    model_config = ConfigDict(frozen=True)

    variant: str
    round: int
    values: dict[str, float | None] = {}
    failed: str | None = None
    input_sha256: str = ""
    #: when its feed started (Unix time): in parallel mode the same moment for every variant of the round
    fed_from: float | None = None


class MetricComparison(BaseModel):
    """One variant x metric: the test, the corrected p, the effect with its interval, the verdict."""

    model_config = ConfigDict(frozen=True)

    variant: str
    metric: str
    n: int
    verdict: Verdict
    #: None with a verdict of "nodata"
    p: float | None = None
    p_adjusted: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


class VariantOutcome(BaseModel):
    """J1, J3, J4: a variant's standing in the trial."""

    model_config = ConfigDict(frozen=True)

    name: str
    status: Literal["baseline", "ok", "failed", "disqualified"]
    reason: str = ""
    rounds: int = 0
    score: int = 0


class TrialReport(BaseModel):
    """The whole analysis: what the markdown, JSON and plots of a trial show."""

    model_config = ConfigDict(frozen=True)

    trial: str
    alpha: float
    tested_at: float
    paired: bool
    rounds: int
    comparisons: list[MetricComparison]
    variants: dict[str, VariantOutcome]
    winner: str
    decided: bool
    input_consistent: bool


def _by_variant(results: list[RoundResult]) -> dict[str, dict[int, RoundResult]]:
    out: dict[str, dict[int, RoundResult]] = {}
    for r in results:
        out.setdefault(r.variant, {})[r.round] = r
    return out


def _values(
    base: dict[int, RoundResult], mine: dict[int, RoundResult], metric: str, paired: bool
) -> tuple[list[float], list[float]]:
    """J2, J3: the round values to compare (paired: only the rounds where both have one, in round order)."""

    def value(r: RoundResult) -> float | None:
        return r.values.get(metric)

    if paired:
        common = sorted(i for i in set(base) & set(mine) if value(base[i]) is not None and value(mine[i]) is not None)
        return [float(value(base[i]) or 0.0) for i in common], [float(value(mine[i]) or 0.0) for i in common]
    b = [x for x in map(value, base.values()) if x is not None]
    return b, [x for x in map(value, mine.values()) if x is not None]


def _failure(definition: TrialDefinition, rounds: dict[int, RoundResult]) -> str:
    """J1, J3: why a variant failed ("" when it did not)."""
    for r in sorted(rounds.values(), key=lambda x: x.round):
        if r.failed:
            return f"round {r.round + 1}: {r.failed}"
    if not rounds:
        return "no round ran"
    for metric in definition.metrics:
        missing = sum(1 for r in rounds.values() if r.values.get(metric) is None)
        if 2 * missing >= len(rounds):
            return f"no data for {metric} in {missing} of {len(rounds)} rounds"
    return ""


def judge(definition: TrialDefinition, results: list[RoundResult], seed: int | None = None) -> TrialReport:
    """J1-J6 over every round recorded so far (also mid-trial: the sequential mode's look)."""
    paired = definition.pairing == "rounds"
    alpha = look_alpha(definition.alpha, definition.rounds, definition.stop_early_after, definition.pairing)
    rounds_of = _by_variant(results)
    base = definition.baseline.name
    failures = {v.name: _failure(definition, rounds_of.get(v.name, {})) for v in definition.variants}
    raw: list[tuple[str, str, int, tuple[float, float, float, float] | None]] = []
    if not failures[base]:
        base_rounds = rounds_of[base]
        for variant in definition.challengers:
            if failures[variant.name]:
                continue
            mine = rounds_of[variant.name]
            for metric in definition.metrics:
                b, v = _values(base_rounds, mine, metric, paired)
                if not b or not v:
                    raw.append((variant.name, metric, 0, None))
                    continue
                c = compare(b, v, paired=paired, alpha=alpha, seed=definition.seed if seed is None else seed)
                raw.append((variant.name, metric, c.n, (c.p, c.ratio, c.ci_low, c.ci_high)))
    adjusted = iter(holm([r[3][0] for r in raw if r[3] is not None]))
    comparisons = []
    for name, metric, n, numbers in raw:
        spec = definition.metrics[metric]
        if numbers is None:
            comparisons.append(MetricComparison(variant=name, metric=metric, n=0, verdict="nodata"))
            continue
        p, ratio, low, high = numbers
        p_adj = next(adjusted)
        comparisons.append(
            MetricComparison(
                variant=name,
                metric=metric,
                n=n,
                p=p,
                p_adjusted=p_adj,
                ratio=ratio,
                ci_low=low,
                ci_high=high,
                verdict=verdict(p_adj, ratio, low, high, spec.direction, spec.band, alpha),
            )
        )
    outcomes = _outcomes(definition, rounds_of, failures, comparisons)
    hashes = {(r.round, r.input_sha256) for r in results if r.input_sha256}
    return TrialReport(
        trial=definition.name,
        alpha=definition.alpha,
        tested_at=alpha,
        paired=paired,
        rounds=max((r.round + 1 for r in results), default=0),
        comparisons=comparisons,
        variants=outcomes,
        winner=_winner(definition, outcomes, comparisons),
        decided=bool(comparisons) and all(c.verdict in ("better", "worse", "same") for c in comparisons),
        input_consistent=len(hashes) == len({r for r, _ in hashes}),
    )


def _outcomes(
    definition: TrialDefinition,
    rounds_of: dict[str, dict[int, RoundResult]],
    failures: dict[str, str],
    comparisons: list[MetricComparison],
) -> dict[str, VariantOutcome]:
    out = {}
    for v in definition.variants:
        done = len(rounds_of.get(v.name, {}))
        if failures[v.name]:
            out[v.name] = VariantOutcome(name=v.name, status="failed", reason=failures[v.name], rounds=done)
            continue
        if v.baseline:
            out[v.name] = VariantOutcome(name=v.name, status="baseline", rounds=done)
            continue
        mine = [c for c in comparisons if c.variant == v.name]
        score = sum(c.verdict == "better" for c in mine) - sum(c.verdict == "worse" for c in mine)
        critical = [c.metric for c in mine if c.verdict == "worse" and definition.metrics[c.metric].critical]
        if critical:
            reason = f"worse on the critical metric {', '.join(critical)}"
            out[v.name] = VariantOutcome(name=v.name, status="disqualified", reason=reason, rounds=done, score=score)
        else:
            out[v.name] = VariantOutcome(name=v.name, status="ok", rounds=done, score=score)
    return out


def _winner(
    definition: TrialDefinition, outcomes: dict[str, VariantOutcome], comparisons: list[MetricComparison]
) -> str:
    """J5 (an empty name when even the baseline failed and no challenger is left)."""
    first = next(iter(definition.metrics))
    direction = definition.metrics[first].direction

    def first_effect(name: str) -> float:
        ratio = next((c.ratio for c in comparisons if c.variant == name and c.metric == first), None)
        if ratio is None:
            return 0.0
        return ratio - 1.0 if direction == "higher" else 1.0 - ratio

    standing = [o for o in outcomes.values() if o.status in ("baseline", "ok")]
    if not standing:
        return ""
    best = max(standing, key=lambda o: (o.score, o.status == "baseline", first_effect(o.name)))
    return best.name
