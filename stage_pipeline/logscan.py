"""Scanning a stage's log lines: error lines, progress and an ETA. Pure: the caller passes the time of each line.

Example:
    >>> s = LogScanner(progress_regex=r"frame (?P<done>\\d+)/(?P<total>\\d+)")
    >>> s.feed("frame 10/100", now=0.0).progress
    0.1
    >>> s.feed("ERROR: disk full", now=5.0).is_error
    True
    >>> s.feed("frame 20/100", now=10.0).progress, s.eta_seconds()
    (0.2, 80.0)
    >>> s.errors, s.error_count
    (['ERROR: disk full'], 1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The seed's error rule (003 "Analyzing the Problem Space": "error / warning detection / tracking!
# ([!a-zA-z]err[!a-zA-z])|([!a-zA-z]error[!a-zA-z])"; 002 lists "Detecting program errors (in a stage execution)"
# among the tasks). Its `[!a-zA-z]` means "not a letter" (glob-style negation), so "err"/"error" must not touch a
# letter on either side: digits, "_" and punctuation count as separators, unlike \b (so "E_ERROR" and "err2"
# match, "stderr" and "errors" do not). Case-insensitive, as logs write ERROR, Error and error alike.
DEFAULT_ERROR_REGEX = r"(?i)(?<![a-z])(err|error)(?![a-z])"

#: Characters kept of one error line (a stage may print a megabyte on one line).
MAX_LINE_CHARS = 500


@dataclass(frozen=True)
class LineInfo:
    """What one line told: whether it is an error line, and the progress fraction (0..1) it reported, if any."""

    is_error: bool
    progress: float | None


class LogScanner:
    """Feed a stage's lines one by one; collects error lines (count + the first ``max_errors``) and progress.

    ``progress_regex`` needs a named group ``pct`` (0-100) or the groups ``done`` and ``total``.
    The ETA is the remaining fraction divided by the rate observed since the first progress line.
    """

    def __init__(self, error_regex: str | None = None, progress_regex: str | None = None, max_errors: int = 50):
        self.error_re = re.compile(error_regex or DEFAULT_ERROR_REGEX)
        self.progress_re = re.compile(progress_regex) if progress_regex else None
        if self.progress_re is not None and not progress_groups_ok(self.progress_re):
            raise ValueError("progress_regex needs a named group 'pct' or the named groups 'done' and 'total'")
        self.max_errors = max_errors
        self.errors: list[str] = []
        self.error_count = 0
        self.fraction: float | None = None
        # (time, fraction) of the first and the latest progress report; the rate is taken between them.
        self._first: tuple[float, float] | None = None
        self._last: tuple[float, float] | None = None

    def feed(self, line: str, now: float) -> LineInfo:
        """Scan one line seen at time ``now`` (seconds, any monotonic origin)."""
        line = line.rstrip("\r\n")
        is_error = self.error_re.search(line) is not None
        if is_error:
            self.error_count += 1
            if len(self.errors) < self.max_errors:
                self.errors.append(line[:MAX_LINE_CHARS])
        progress = self._progress_of(line)
        if progress is not None:
            if self._last is None or progress < self._last[1]:
                # First report, or the count went back (a new pass): the rate is measured afresh.
                self._first = (now, progress)
            self._last = (now, progress)
            self.fraction = progress
        return LineInfo(is_error, progress)

    def _progress_of(self, line: str) -> float | None:
        if self.progress_re is None:
            return None
        match = self.progress_re.search(line)
        if match is None:
            return None
        groups = match.groupdict()
        try:
            if groups.get("pct") is not None:
                value = float(groups["pct"]) / 100.0
            elif groups.get("done") is not None and groups.get("total") is not None:
                total = float(groups["total"])
                if total <= 0:
                    return None
                value = float(groups["done"]) / total
            else:
                return None
        except ValueError:
            return None
        return min(max(value, 0.0), 1.0)

    def rate(self) -> float | None:
        """Fraction per second observed so far, or None before two reports at different times."""
        if self._first is None or self._last is None or self._last[0] <= self._first[0]:
            return None
        return (self._last[1] - self._first[1]) / (self._last[0] - self._first[0])

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left: remaining fraction / observed rate, counted from the latest report (or ``now``)."""
        rate = self.rate()
        if rate is None or rate <= 0 or self._last is None:
            return None
        eta = (1.0 - self._last[1]) / rate
        if now is not None:
            eta -= now - self._last[0]
        return max(eta, 0.0)

    def summary(self) -> str:
        """One line for the end of a stage, e.g. ``"3 error lines"`` or ``"120 error lines (first 50 kept)"``."""
        if self.error_count == 0:
            return "no error lines"
        noun = "error line" if self.error_count == 1 else "error lines"
        kept = f" (first {len(self.errors)} kept)" if self.error_count > len(self.errors) else ""
        return f"{self.error_count} {noun}{kept}"


def progress_groups_ok(pattern: re.Pattern[str]) -> bool:
    """Whether a progress pattern has the named group ``pct``, or both ``done`` and ``total``."""
    names = set(pattern.groupindex)
    return "pct" in names or {"done", "total"} <= names
