"""Statistics of configuration trials (config_trials.stats): hand-worked cases, scipy agreement, error rates.

The error-rate tests simulate what a trial measures: per round and variant a series of autocorrelated samples
(AR(1), phi = 0.9, as latency under a slowly changing load), plus a level shared by every variant of the round
(the round's input and time of day). The round design (S1) keeps the false-positive rate at alpha; testing the
samples one by one, as Kayenta does, does not — shown here, so the check can tell the two apart.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from config_trials.calibrate import simulate_aa, simulated_rounds
from config_trials.stats import compare, ewma, holm, look_alpha, looks, p_value, round_value, verdict


# --- S1: one value per round ---------------------------------------------------------------------------------------
def test_round_value_is_the_median_after_the_warm_up() -> None:
    samples = [(0.0, 100.0), (4.9, 90.0), (5.0, 3.0), (6.0, 1.0), (7.0, 2.0), (8.0, 4.0)]
    assert round_value(samples, warmup_s=5) == 2.5
    assert round_value(samples) == 3.5
    assert round_value([(1.0, 7.0)], warmup_s=2) is None


def test_ewma_matches_the_recursive_definition() -> None:
    values = [10.0, 20.0, 0.0, 5.0]
    w = 2 / (4 + 1)
    expected = [10.0]
    for x in values[1:]:
        expected.append(w * x + (1 - w) * expected[-1])
    assert ewma(values, span=4) == pytest.approx(expected)
    assert ewma([], span=3) == []


# --- S2: the exact tests -------------------------------------------------------------------------------------------
def test_paired_p_by_hand_every_round_worse() -> None:
    # Six rounds, all differences positive and distinct: the most extreme of 2**6 sign patterns, both tails.
    b = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    v = [x + d for x, d in zip(b, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], strict=True)]
    assert p_value(b, v, paired=True) == pytest.approx(2 / 64)


def test_paired_p_by_hand_one_round_the_other_way() -> None:
    # Differences +2..+6 and -1: W- = rank 1, so P(W- <= 1) = 2 patterns of 64 per tail.
    b = [10.0] * 6
    v = [9.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    assert p_value(b, v, paired=True) == pytest.approx(4 / 64)


def test_unpaired_p_by_hand_complete_separation() -> None:
    # Four rounds each, every variant value above every baseline value: 2 orderings of C(8, 4) = 70.
    assert p_value([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], paired=False) == pytest.approx(2 / 70)


@pytest.mark.parametrize("paired", [True, False])
def test_p_agrees_with_scipy_on_random_data(paired: bool) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        b, v = rng.normal(10, 1, 7), rng.normal(10.5, 1, 7)
        if paired:
            expected = scipy_stats.wilcoxon(v, b, method="exact").pvalue
        else:
            expected = scipy_stats.mannwhitneyu(v, b, method="exact").pvalue
        assert p_value(list(b), list(v), paired) == pytest.approx(expected)


def test_identical_rounds_give_p_one() -> None:
    assert p_value([3.0, 4.0, 5.0], [3.0, 4.0, 5.0], paired=True) == 1.0
    assert p_value([3.0, 3.0], [3.0, 3.0], paired=False) == 1.0


# --- S3: effects ---------------------------------------------------------------------------------------------------
def test_paired_effect_is_the_median_per_round_ratio_with_an_interval_around_it() -> None:
    b = [10.0, 20.0, 40.0, 10.0, 20.0, 40.0]
    v = [x * r for x, r in zip(b, [1.18, 1.2, 1.22, 1.19, 1.21, 1.2], strict=True)]
    c = compare(b, v, paired=True, seed=1)
    assert c.ratio == pytest.approx(1.2)
    assert c.ci_low <= 1.2 <= c.ci_high and c.ci_low > 1.15 and c.ci_high < 1.25
    assert compare(b, v, paired=True, seed=1) == c  # seeded: the same data give the same interval


def test_unpaired_effect_is_the_ratio_of_medians() -> None:
    c = compare([10.0, 11.0, 12.0, 13.0], [20.0, 22.0, 24.0, 26.0], paired=False)
    assert c.ratio == pytest.approx(23.0 / 11.5)
    assert c.ci_low > 1.5


def test_paired_rounds_must_match() -> None:
    with pytest.raises(ValueError, match="as many"):
        compare([1.0, 2.0], [1.0], paired=True)


# --- S4, S5, S6 ----------------------------------------------------------------------------------------------------
def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04 with m = 3: 0.03, max(0.03, 0.06), max(0.06, 0.04) -> 0.03, 0.06, 0.06.
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([]) == []
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    # Step-down: once the running maximum is set, a later (larger) p cannot lower it.
    assert holm([0.001, 0.02, 0.021, 0.5]) == pytest.approx([0.004, 0.06, 0.06, 0.5])


@pytest.mark.parametrize(
    ("p", "ratio", "low", "high", "direction", "expected"),
    [
        (0.01, 1.30, 1.20, 1.40, "lower", "worse"),
        (0.01, 1.30, 1.20, 1.40, "higher", "better"),
        (0.01, 0.70, 0.60, 0.80, "lower", "better"),
        (0.01, 1.03, 1.01, 1.05, "lower", "same"),  # significant, but inside the band
        (0.40, 1.01, 0.98, 1.04, "lower", "same"),  # the whole interval inside the band
        (0.40, 1.20, 0.90, 1.50, "lower", "inconclusive"),
        (0.06, 1.30, 1.20, 1.40, "lower", "inconclusive"),  # a big effect, not significant after correction
    ],
)
def test_verdicts(p: float, ratio: float, low: float, high: float, direction: str, expected: str) -> None:
    assert verdict(p, ratio, low, high, direction=direction, band=0.05, alpha=0.05) == expected


def test_repeated_looks_share_alpha_among_the_looks_that_can_reject() -> None:
    assert look_alpha(0.05, 12, 8) == pytest.approx(0.01)  # unpaired: every look after 8+ rounds can reject
    assert look_alpha(0.05, 12, 12) == 0.05
    assert looks(0.05, 8, 3) == ([5, 6, 7, 8], 0.0125)
    assert looks(0.05, 10, 6, "rounds") == ([8, 9, 10], pytest.approx(0.05 / 3))
    assert looks(0.05, 4, 2, "none") == ([4], 0.05)  # only the last look can (2 / 70)


# --- error rates ---------------------------------------------------------------------------------------------------
def test_round_design_keeps_the_false_positive_rate_and_per_sample_testing_does_not() -> None:
    paired = simulate_aa(rounds=6, paired=True, alpha=0.05, trials=2000, seed=2026)
    assert paired["false_positive_rate"] <= 0.065, paired
    assert paired["per_sample_rate"] > 0.2, paired  # autocorrelated samples are not independent
    unpaired = simulate_aa(rounds=5, paired=False, alpha=0.05, trials=2000, seed=2027)
    assert unpaired["false_positive_rate"] <= 0.065 < 0.2 < unpaired["per_sample_rate"], unpaired


def test_holm_keeps_the_family_wise_error_of_identical_variants() -> None:
    # 4 variants identical to the baseline x 3 metrics, 10 paired rounds (an exact p can go down to 0.002, so
    # a single uncorrected false positive is common and Holm has something to correct).
    # The exact p-values come from scipy in one vectorised call per metric (p_value is scipy's, checked above).
    rng = np.random.default_rng(7)
    trials, variants, metrics, rounds, alpha = 1000, 4, 3, 10, 0.05
    corrected = uncorrected = 0
    for _ in range(trials):
        ps: list[float] = []
        for _ in range(metrics):
            medians = np.median(simulated_rounds(rng, variants + 1, rounds, 30), axis=2)
            ps += list(scipy_stats.wilcoxon(medians[1:], medians[:1], axis=1, method="exact").pvalue)
        corrected += min(holm(ps)) < alpha
        uncorrected += min(ps) < alpha
    assert corrected / trials <= 0.05, corrected / trials
    assert uncorrected / trials > 0.2, uncorrected / trials


def test_a_real_slowdown_is_found_in_six_rounds() -> None:
    # The power side of the same simulation: +20 % latency is declared worse (p < 0.05) in 6 paired rounds.
    rng = np.random.default_rng(11)
    found = 0
    for _ in range(200):
        data = simulated_rounds(rng, 2, 6, 60)
        data[1] *= 1.2
        medians = np.median(data, axis=2)
        c = compare(list(medians[0]), list(medians[1]), paired=True)
        found += verdict(c.p, c.ratio, c.ci_low, c.ci_high, "lower", 0.05, 0.05) == "worse"
    assert found / 200 > 0.95
