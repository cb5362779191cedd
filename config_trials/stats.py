"""The statistics of a trial: one value per round, exact tests, Holm, effects with bootstrap intervals (pure).

Rules (notes ``config-trials-anchors.md`` §2, §3; beyond Timon, which names no test, and Kayenta, which treats
autocorrelated points as independent and corrects nothing):

- S1 the round is the unit of analysis: a round's value of a metric is the median of its samples after the
  warm-up (samples inside a round are autocorrelated; testing them one by one inflates false positives).
- S2 paired rounds (every variant ran on the round's input) → the exact Wilcoxon signed-rank test of the
  per-round differences; independent rounds → the exact Mann-Whitney U test. Both two-sided, from scipy.
- S3 the effect is the ratio variant / baseline: the median of the per-round ratios when paired, the ratio of
  the medians otherwise; its confidence interval (level ``1 - alpha``) is a seeded percentile bootstrap.
- S4 Holm's step-down correction over every variant x metric comparison of a trial.
- S5 the verdict per metric: **better** / **worse** when the corrected p is below alpha and the effect lies
  outside the equivalence band (in the metric's direction); **same** when the interval lies inside the band, or
  the difference is significant but inside it; **inconclusive** otherwise; **nodata** without a paired round.
- S6 sequential stopping looks after every round from ``stop_early_after`` on; each look tests at
  ``alpha / looks`` (Bonferroni over the planned looks that can reject at all, so repeated looks keep the error
  rate at alpha).

Example:
    >>> round_value([(1.0, 5.0), (12.0, 30.0), (15.0, 10.0), (20.0, 20.0)], warmup_s=10)
    20.0
    >>> c = compare([10.0, 11.0, 10.5, 9.5, 10.2, 10.8], [13.0, 14.0, 13.5, 12.1, 13.9, 14.2], paired=True)
    >>> round(c.p, 4), round(c.ratio, 2), c.ci_low > 1
    (0.0312, 1.29, True)
    >>> verdict(c.p, c.ratio, c.ci_low, c.ci_high, direction="lower", band=0.05, alpha=0.05)
    'worse'
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats as scipy_stats

Verdict = Literal["better", "worse", "same", "inconclusive", "nodata"]

#: bootstrap resamples of an effect's interval (seeded: the same data give the same interval)
RESAMPLES = 2000


class Comparison(BaseModel):
    """S2, S3: one variant against the baseline on one metric, before the correction."""

    model_config = ConfigDict(frozen=True)

    n: int
    p: float
    ratio: float
    ci_low: float
    ci_high: float


def round_value(samples: Sequence[tuple[float, float]], warmup_s: float = 0.0) -> float | None:
    """S1: the median of ``(seconds into the round, value)`` samples after ``warmup_s``; None without any."""
    kept = [value for at, value in samples if at >= warmup_s]
    return float(statistics.median(kept)) if kept else None


def ewma(values: Sequence[float], span: float) -> list[float]:
    """The exponentially weighted moving average of the paper's plots (``pandas.Series.ewm(span, adjust=False)``).

    >>> ewma([1.0, 3.0, 3.0], span=3)
    [1.0, 2.0, 2.5]
    """
    weight = 2.0 / (span + 1.0)
    out: list[float] = []
    for value in values:
        out.append(value if not out else weight * value + (1 - weight) * out[-1])
    return out


def p_value(baseline: Sequence[float], variant: Sequence[float], paired: bool) -> float:
    """S2: the two-sided p of the exact test (Wilcoxon signed-rank when ``paired``, Mann-Whitney U otherwise).

    >>> p_value([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], paired=True), p_value([1.0, 2.0], [1.0, 2.0], paired=False)
    (1.0, 1.0)
    """
    b, v = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    if paired:
        diff = v - b
        if not np.any(diff):
            return 1.0  # identical rounds: no evidence of any difference (scipy would divide by zero)
        # zsplit keeps tied rounds in the ranking (a zero difference counts half each way) and the exact
        # distribution needs no ties among the rest; with ties scipy falls back to the normal approximation.
        return float(scipy_stats.wilcoxon(v, b, zero_method="zsplit", alternative="two-sided").pvalue)
    if np.all(b == b[0]) and np.all(v == b[0]):
        return 1.0
    return float(scipy_stats.mannwhitneyu(v, b, alternative="two-sided", method="auto").pvalue)


def compare(
    baseline: Sequence[float], variant: Sequence[float], paired: bool, alpha: float = 0.05, seed: int = 0
) -> Comparison:
    """S2, S3: test and effect of ``variant`` against ``baseline`` (one value per round; paired: same order)."""
    if paired and len(baseline) != len(variant):
        raise ValueError(f"paired rounds need as many baseline as variant values ({len(baseline)} vs {len(variant)})")
    b, v = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    rng = np.random.default_rng(seed)
    if paired:
        ratios = v / b
        ratio = float(np.median(ratios))
        samples: tuple[np.ndarray, ...] = (ratios,)

        def statistic(r: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.asarray(np.median(r, axis=axis))

    else:
        ratio = float(np.median(v) / np.median(b))
        samples = (v, b)

        def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:  # type: ignore[misc]
            return np.asarray(np.median(x, axis=axis) / np.median(y, axis=axis))

    if len(b) < 2 or (np.ptp(samples[0]) == 0 and (paired or np.ptp(samples[1]) == 0)):
        low = high = ratio  # no spread to resample (bootstrap needs variation)
    else:
        interval = scipy_stats.bootstrap(
            samples, statistic, confidence_level=1 - alpha, n_resamples=RESAMPLES, method="percentile", rng=rng
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return Comparison(n=len(v), p=p_value(list(b), list(v), paired), ratio=ratio, ci_low=low, ci_high=high)


def holm(p_values: Sequence[float]) -> list[float]:
    """S4: Holm-adjusted p-values, in the given order (compare each with alpha).

    The i-th smallest of m p-values becomes ``max over j <= i of (m - j + 1) * p_(j)``, capped at 1. Written
    here rather than taken from statsmodels: its ``multipletests`` runs a full ``gc.collect()`` on every call
    (38 ms in a test process), and the error-rate simulations call it thousands of times.

    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(
    p_adjusted: float, ratio: float, ci_low: float, ci_high: float, direction: str, band: float, alpha: float
) -> Verdict:
    """S5: better / worse / same / inconclusive of one comparison after the correction.

    >>> verdict(0.01, 0.80, 0.70, 0.90, direction="lower", band=0.05, alpha=0.05)
    'better'
    >>> verdict(0.01, 1.02, 1.01, 1.03, direction="higher", band=0.05, alpha=0.05)
    'same'
    >>> verdict(0.30, 1.10, 0.90, 1.30, direction="lower", band=0.05, alpha=0.05)
    'inconclusive'
    """
    outside = abs(ratio - 1.0) > band
    if p_adjusted < alpha and outside:
        up_is_good = direction == "higher"
        return "better" if (ratio > 1.0) == up_is_good else "worse"
    if (1.0 - band <= ci_low and ci_high <= 1.0 + band) or p_adjusted < alpha:
        return "same"
    return "inconclusive"


def smallest_p(rounds: int, pairing: str) -> float:
    """The smallest two-sided p the exact test can give with ``rounds`` rounds per variant.

    Paired (Wilcoxon signed-rank): all ``2**n`` sign patterns are equally likely, the two extreme ones reach it.
    Unpaired (Mann-Whitney U, ``n`` against ``n``): the two extreme orderings of ``C(2n, n)``.

    >>> smallest_p(5, "rounds"), smallest_p(6, "rounds"), round(smallest_p(4, "none"), 4)
    (0.0625, 0.03125, 0.0286)
    """
    if pairing == "rounds":
        return min(1.0, 2 / 2**rounds)
    return min(1.0, 2 / math.comb(2 * rounds, rounds))


def looks(alpha: float, rounds: int, stop_early_after: int | None, pairing: str = "none") -> tuple[list[int], float]:
    """S6: the rounds after which the sequential mode looks, and the level each look tests at.

    Bonferroni over the looks, counting only those that can reject at all: a look whose smallest possible p is
    not below the level never declares anything, so it spends no error rate. Without sequential stopping: one
    look, after the last round, at ``alpha``.

    >>> looks(0.05, 12, None)
    ([12], 0.05)
    >>> looks(0.05, 8, 3)  # after 3 and 4 rounds even the most extreme result could not reach 0.05 / 4
    ([5, 6, 7, 8], 0.0125)
    """
    if stop_early_after is None:
        return [rounds], alpha
    kept = list(range(stop_early_after, rounds + 1))
    while True:
        level = alpha / len(kept)
        able = [n for n in kept if smallest_p(n, pairing) < level]
        if not able:  # no look can reject at a shared level: look once, at the end
            return [rounds], alpha
        if able == kept:
            return kept, level
        kept = able


def look_alpha(alpha: float, rounds: int, stop_early_after: int | None, pairing: str = "none") -> float:
    """S6: the level each look tests at (see :func:`looks`).

    >>> look_alpha(0.05, 10, None), look_alpha(0.05, 10, 6)
    (0.05, 0.01)
    """
    return looks(alpha, rounds, stop_early_after, pairing)[1]
