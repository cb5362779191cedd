"""The loan generator and its labelling rule (no Spark: this is the fast stage of the CI run)."""

from __future__ import annotations

import pytest
from loans import (
    CREDIT_SCORE_RANGE,
    DTI_RANGE,
    FEATURES,
    INCOME_RANGE,
    LOAN_TO_INCOME_RANGE,
    TERMS,
    Loan,
    default_logit,
    default_probability,
    generate,
)

TYPICAL = {"income": 60_000.0, "loan_amount": 180_000.0, "credit_score": 700, "term_months": 240, "dti": 0.30}


def test_the_same_seed_gives_the_same_loans() -> None:
    assert generate(300, seed=7) == generate(300, seed=7)
    assert generate(300, seed=7) != generate(300, seed=8)
    assert generate(100, seed=7) == generate(300, seed=7)[:100]  # a longer book extends a shorter one


def test_sizes() -> None:
    assert generate(0) == []
    assert len(generate(123)) == 123
    with pytest.raises(ValueError, match="rows"):
        generate(-1)


def test_values_stay_in_sensible_ranges() -> None:
    for loan in generate(2000, seed=3):
        assert INCOME_RANGE[0] <= loan.income <= INCOME_RANGE[1]
        ratio = loan.loan_amount / loan.income
        assert LOAN_TO_INCOME_RANGE[0] - 1e-6 <= ratio <= LOAN_TO_INCOME_RANGE[1] + 1e-6
        assert CREDIT_SCORE_RANGE[0] <= loan.credit_score <= CREDIT_SCORE_RANGE[1]
        assert isinstance(loan.credit_score, int)
        assert loan.term_months in TERMS
        assert DTI_RANGE[0] <= loan.dti <= DTI_RANGE[1]
        assert loan.default in (0, 1)


def test_both_classes_are_present_and_defaults_are_the_minority() -> None:
    labels = [loan.default for loan in generate(2000, seed=42)]
    rate = sum(labels) / len(labels)
    assert 0.1 < rate < 0.5, rate


def test_the_columns_are_the_features_then_the_label() -> None:
    assert Loan._fields == (*FEATURES, "default")


def test_the_rule_at_typical_values() -> None:
    assert default_logit(**TYPICAL) == pytest.approx(-1.2)
    assert default_probability(**TYPICAL) == pytest.approx(0.2315, abs=1e-4)


@pytest.mark.parametrize(
    ("field", "riskier"),
    [("dti", 0.50), ("loan_amount", 300_000.0), ("term_months", 360), ("credit_score", 600), ("income", 40_000.0)],
)
def test_the_rule_moves_the_right_way(field: str, riskier: float) -> None:
    assert default_probability(**{**TYPICAL, field: riskier}) > default_probability(**TYPICAL)


def test_the_rule_is_a_probability() -> None:
    extremes = [
        dict(TYPICAL, dti=0.65, credit_score=300, loan_amount=360_000.0, term_months=360),
        dict(TYPICAL, dti=0.0, credit_score=850, loan_amount=30_000.0, term_months=180),
    ]
    for features in extremes:
        assert 0.0 < default_probability(**features) < 1.0
    with pytest.raises(ValueError, match="income"):
        default_logit(**{**TYPICAL, "income": 0.0})


def test_labels_follow_the_rule() -> None:
    """The rule is noisy but real: loans it calls risky default far more often than those it calls safe."""
    loans = generate(4000, seed=11)
    scored = sorted(loans, key=lambda loan: default_probability(*loan[:5]))
    quarter = len(scored) // 4
    safe = sum(loan.default for loan in scored[:quarter]) / quarter
    risky = sum(loan.default for loan in scored[-quarter:]) / quarter
    assert risky > safe + 0.3, (safe, risky)
    expected = sum(default_probability(*loan[:5]) for loan in loans) / len(loans)
    observed = sum(loan.default for loan in loans) / len(loans)
    assert observed == pytest.approx(expected, abs=0.03)
