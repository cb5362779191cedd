"""Log scanning: the seed's error rule, progress from pct or done/total, ETA from the observed rate."""

from __future__ import annotations

import pytest

from stage_pipeline.logscan import DEFAULT_ERROR_REGEX, LogScanner


@pytest.mark.parametrize(
    ("line", "is_error"),
    [
        ("ERROR: cannot open video", True),
        ("error", True),
        ("Err: bad frame", True),
        ("[err] x", True),
        ("E_ERROR_42", True),  # "_" is no letter: the seed's rule matches, \b would not
        ("err2", True),
        ("3 errors found", False),  # "errors" touches a letter
        ("writing to stderr", False),
        ("terrible", False),
        ("frame 10/100", False),
    ],
)
def test_default_error_rule_is_the_seeds(line: str, is_error: bool) -> None:
    assert LogScanner().feed(line, now=0.0).is_error is is_error


def test_error_lines_are_counted_and_capped() -> None:
    scanner = LogScanner(max_errors=3)
    for i in range(10):
        scanner.feed(f"error {i}\n", now=float(i))
        scanner.feed("all fine", now=float(i))
    assert scanner.error_count == 10
    assert scanner.errors == ["error 0", "error 1", "error 2"]
    assert scanner.summary() == "10 error lines (first 3 kept)"
    assert LogScanner().summary() == "no error lines"


def test_long_error_lines_are_cut() -> None:
    scanner = LogScanner()
    scanner.feed("error " + "x" * 10_000, now=0.0)
    assert len(scanner.errors[0]) == 500


def test_custom_error_regex() -> None:
    scanner = LogScanner(error_regex=r"^WARN")
    assert scanner.feed("WARN low memory", 0.0).is_error
    assert not scanner.feed("error elsewhere", 0.0).is_error


def test_progress_from_done_and_total_with_eta() -> None:
    scanner = LogScanner(progress_regex=r"frame (?P<done>\d+)/(?P<total>\d+)")
    assert scanner.feed("frame 10/100", now=100.0).progress == pytest.approx(0.1)
    assert scanner.eta_seconds() is None  # one report: no rate yet
    assert scanner.feed("no progress here", now=105.0).progress is None
    assert scanner.feed("frame 30/100", now=120.0).progress == pytest.approx(0.3)
    # 0.2 in 20 s → 0.01/s; 0.7 left → 70 s after the latest report.
    assert scanner.rate() == pytest.approx(0.01)
    assert scanner.eta_seconds() == pytest.approx(70.0)
    assert scanner.eta_seconds(now=130.0) == pytest.approx(60.0)
    assert scanner.eta_seconds(now=500.0) == 0.0
    assert scanner.fraction == pytest.approx(0.3)


def test_progress_from_pct_is_clamped() -> None:
    scanner = LogScanner(progress_regex=r"(?P<pct>\d+(\.\d+)?)%")
    assert scanner.feed("12.5% done", 0.0).progress == pytest.approx(0.125)
    assert scanner.feed("150%", 1.0).progress == 1.0
    assert scanner.eta_seconds() == 0.0


def test_progress_going_back_restarts_the_rate() -> None:
    scanner = LogScanner(progress_regex=r"(?P<pct>\d+)%")
    scanner.feed("50%", 0.0)
    scanner.feed("90%", 10.0)
    scanner.feed("pass 2: 10%", 20.0)
    assert scanner.eta_seconds() is None
    scanner.feed("20%", 30.0)
    assert scanner.eta_seconds() == pytest.approx(80.0)


def test_zero_total_and_missing_groups() -> None:
    scanner = LogScanner(progress_regex=r"(?P<done>\d+)/(?P<total>\d+)")
    assert scanner.feed("0/0", 0.0).progress is None
    with pytest.raises(ValueError, match="named group"):
        LogScanner(progress_regex=r"(\d+)%")


def test_default_regex_constant_is_used_when_none_given() -> None:
    assert LogScanner().error_re.pattern == DEFAULT_ERROR_REGEX
