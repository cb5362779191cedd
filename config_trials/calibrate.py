"""A/A calibration on simulated rounds: how often identical variants are declared different (pure, seeded).

Rules (notes ``config-trials-anchors.md`` §3(b) check 2):

- C1 what a trial measures, simulated: per round and variant a series of autocorrelated samples (AR(1),
  ``phi`` 0.9, like latency under a slowly changing load) around a level shared by the round's variants (its
  input and time of day), identical variants otherwise.
- C2 the round design (one median per round, :func:`~config_trials.stats.p_value`) is counted next to testing
  every sample on its own (Mann-Whitney U over all samples, as Kayenta does): the first should stay at or
  below alpha, the second is inflated by the autocorrelation.

Example:
    >>> out = simulate_aa(rounds=5, paired=False, alpha=0.05, trials=200, seed=1)
    >>> bool(out["false_positive_rate"] <= 0.065 < out["per_sample_rate"])
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import signal
from scipy import stats as scipy_stats

from config_trials.stats import p_value

PHI = 0.9


def ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float = PHI) -> np.ndarray:
    """C1: AR(1) noise along the last axis, unit innovations, started from its stationary distribution."""
    innovations = rng.standard_normal(shape)
    innovations[..., 0] /= math.sqrt(1 - phi**2)
    return np.asarray(signal.lfilter([1.0], [1.0, -phi], innovations, axis=-1))


def simulated_rounds(rng: np.random.Generator, variants: int, rounds: int, samples: int) -> np.ndarray:
    """C1: samples ``[variant, round, sample]`` of identical variants: 100 + the round's level + AR(1) noise."""
    level = rng.normal(0, 5, size=(1, rounds, 1))
    return 100.0 + level + ar1(rng, (variants, rounds, samples))


def simulate_aa(
    rounds: int, paired: bool, alpha: float, trials: int = 2000, seed: int = 0, samples: int = 60
) -> dict[str, Any]:
    """C2: the observed false-positive rates of the round design and of per-sample testing."""
    rng = np.random.default_rng(seed)
    by_round = per_sample = 0
    for _ in range(trials):
        data = simulated_rounds(rng, 2, rounds, samples)
        medians = np.median(data, axis=2)
        by_round += p_value(list(medians[0]), list(medians[1]), paired=paired) < alpha
        per_sample += scipy_stats.mannwhitneyu(data[0].ravel(), data[1].ravel()).pvalue < alpha
    return {
        "trials": trials,
        "rounds": rounds,
        "alpha": alpha,
        "false_positive_rate": by_round / trials,
        "per_sample_rate": per_sample / trials,
    }


def simulate_sequential(
    effect: float,
    max_rounds: int,
    stop_early_after: int,
    alpha: float = 0.05,
    band: float = 0.05,
    trials: int = 500,
    seed: int = 0,
    samples: int = 60,
) -> dict[str, Any]:
    """S6 on simulated rounds: how many rounds the sequential mode needs, and what it decides.

    The variant's samples are the baseline's distribution times ``effect`` (1.2: 20 % slower). After every round
    from ``stop_early_after`` on, the unpaired exact test at ``alpha / looks`` with the equivalence band; the
    trial stops at the first decided verdict (better, worse or same), else runs to ``max_rounds``.

    >>> out = simulate_sequential(2.0, max_rounds=8, stop_early_after=3, trials=50, seed=1)
    >>> out["median_rounds"], out["verdicts"]["worse"]
    (5.0, 50)
    >>> simulate_sequential(1.0, max_rounds=8, stop_early_after=3, trials=50, seed=2)["verdicts"]["worse"]
    0
    """
    from config_trials.stats import compare, look_alpha, verdict

    rng = np.random.default_rng(seed)
    level = look_alpha(alpha, max_rounds, stop_early_after)  # unpaired, as below
    used: list[int] = []
    verdicts: dict[str, int] = {"better": 0, "worse": 0, "same": 0, "inconclusive": 0}
    for _ in range(trials):
        data = simulated_rounds(rng, 2, max_rounds, samples)
        medians = np.median(data, axis=2)
        medians[1] *= effect
        decided = "inconclusive"
        n = max_rounds
        for n in range(stop_early_after, max_rounds + 1):
            c = compare(list(medians[0][:n]), list(medians[1][:n]), paired=False, alpha=level, seed=n)
            decided = verdict(c.p, c.ratio, c.ci_low, c.ci_high, "lower", band, level)
            if decided != "inconclusive":
                break
        used.append(n)
        verdicts[decided] += 1
    return {
        "effect": effect,
        "trials": trials,
        "median_rounds": float(np.median(used)),
        "mean_rounds": float(np.mean(used)),
        "verdicts": verdicts,
    }
