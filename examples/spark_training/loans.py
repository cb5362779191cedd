"""A seeded synthetic loan book: who defaults, by a noisy logistic rule (pure Python, no Spark, no NumPy).

A small stand-in for the mortgage benchmark the thesis trains on: each loan has an annual ``income``, a
``loan_amount``, a FICO-like ``credit_score`` (300-850), a ``term_months`` (180, 240 or 360) and a
debt-to-income ratio ``dti``. Whether it defaults is drawn from :func:`default_probability`, a logistic rule of
those features, so a logistic regression can learn it but never reach 100 %.

Example:
    >>> loans = generate(3, seed=7)
    >>> loans == generate(3, seed=7), len(loans), sorted(Loan._fields) == sorted((*FEATURES, "default"))
    (True, 3, True)
    >>> round(default_probability(income=60_000, loan_amount=180_000, credit_score=700, term_months=240,
    ...                           dti=0.30), 3)
    0.231
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

#: The feature columns, in the order of :class:`Loan` (the label ``default`` comes last).
FEATURES = ("income", "loan_amount", "credit_score", "term_months", "dti")
#: The loan terms offered and how often each is taken.
TERMS = (180, 240, 360)
TERM_WEIGHTS = (0.2, 0.1, 0.7)
#: Bounds of the generated values.
INCOME_RANGE = (15_000.0, 400_000.0)
CREDIT_SCORE_RANGE = (300, 850)
DTI_RANGE = (0.0, 0.65)
LOAN_TO_INCOME_RANGE = (0.5, 6.0)


class Loan(NamedTuple):
    """One loan; ``default`` is 1 when the borrower defaulted, else 0."""

    income: float
    loan_amount: float
    credit_score: int
    term_months: int
    dti: float
    default: int


def default_logit(income: float, loan_amount: float, credit_score: float, term_months: float, dti: float) -> float:
    """The log-odds of a default: up with the debt-to-income ratio, the loan-to-income ratio and a 30-year term,
    down with the credit score. At typical values (dti 0.30, score 700, 3x income, 20 years) it is -1.2.

    >>> default_logit(60_000, 180_000, 700, 240, 0.30)
    -1.2
    >>> default_logit(60_000, 180_000, 700, 240, 0.50) > default_logit(60_000, 180_000, 760, 240, 0.30)
    True
    """
    if income <= 0:
        raise ValueError(f"income must be > 0, got {income}")
    loan_to_income = loan_amount / income
    long_term = 0.4 if term_months >= 360 else 0.0
    logit = -1.2 + 6.0 * (dti - 0.30) - 0.015 * (credit_score - 700) + 0.6 * (loan_to_income - 3.0) + long_term
    return round(logit, 12)  # 12 places: exact at round inputs, as the examples show


def default_probability(
    income: float, loan_amount: float, credit_score: float, term_months: float, dti: float
) -> float:
    """The probability of a default: the logistic function of :func:`default_logit`.

    >>> default_probability(60_000, 180_000, 700, 240, 0.30) < 0.5
    True
    >>> default_probability(30_000, 150_000, 560, 360, 0.55) > 0.5
    True
    """
    z = default_logit(income, loan_amount, credit_score, term_months, dti)
    return 1.0 / (1.0 + math.exp(-z))


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def generate(rows: int, seed: int = 42) -> list[Loan]:
    """``rows`` loans, the same for the same ``seed``; each label drawn from :func:`default_probability`.

    >>> [loan.default for loan in generate(8, seed=1)]
    [1, 0, 0, 1, 1, 0, 1, 0]
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    rng = random.Random(seed)
    loans = []
    for _ in range(rows):
        income = round(_clamp(rng.lognormvariate(math.log(65_000), 0.45), INCOME_RANGE), 2)
        loan_amount = round(income * _clamp(rng.gauss(3.0, 1.0), LOAN_TO_INCOME_RANGE), 2)
        credit_score = round(_clamp(rng.gauss(690, 60), CREDIT_SCORE_RANGE))
        term_months = rng.choices(TERMS, TERM_WEIGHTS)[0]
        dti = round(_clamp(rng.gauss(0.30, 0.10), DTI_RANGE), 4)
        p = default_probability(income, loan_amount, credit_score, term_months, dti)
        loans.append(Loan(income, loan_amount, credit_score, term_months, dti, int(rng.random() < p)))
    return loans
