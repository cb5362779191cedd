"""The test stage's result: pytest's ``--junitxml`` report, counted, tabled and summed up (pure).

Rules (thesis §5.6: any failing test fails the stage and training runs only after the tests pass; notes
``ci-training-anchors.md`` §6 "Logs/artifacts" and acceptance check 6):

- J1 a ``<testcase>`` with a ``<failure>`` child failed, with an ``<error>`` child errored (both fail the
  stage), with ``<skipped>`` was skipped, else passed; its ``time`` attribute is seconds (0 when absent).
- J2 the report is pytest's (``<testsuites><testsuite>…``) or a bare ``<testsuite>``; XML that does not parse is
  bad input, reported with the parser's line.
- J3 a commit status description is one short line ("2 failed / 10 tests", "10 passed").

Example:
    >>> report = parse_junit(
    ...     '<testsuites><testsuite name="pytest" tests="2">'
    ...     '<testcase classname="tests.test_model" name="test_fit" time="1.25"/>'
    ...     '<testcase classname="tests.test_model" name="test_auc" time="0.5">'
    ...     '<failure message="assert 0.61 &gt; 0.7">tests/test_model.py:9: AssertionError</failure></testcase>'
    ...     '</testsuite></testsuites>', "report.xml")
    >>> report.total, report.failed, describe(report)
    (2, 1, '1 failed / 2 tests')
    >>> report_rows(report)[1]
    {'name': 'tests.test_model.test_auc', 'outcome': 'failed', 'time_s': 0.5, 'message': 'assert 0.61 > 0.7'}
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ci_training.models import TestCase, TestReport
from opsflow.errors import InputError

#: The longest message of a table row (its first line only).
MESSAGE_LIMIT = 200
#: Child element -> outcome, first match wins (J1): a test that failed and then errored in teardown failed.
OUTCOMES = (("failure", "failed"), ("error", "error"), ("skipped", "skipped"))
_ROOTS = ("testsuites", "testsuite")


def _seconds(text: str | None) -> float:
    try:
        value = float(text) if text else 0.0
    except ValueError:
        return 0.0
    return value if value >= 0 else 0.0


def _case(element: ET.Element) -> TestCase:
    outcome, message = "passed", ""
    for tag, name in OUTCOMES:
        child = element.find(tag)
        if child is not None:
            outcome = name
            message = child.get("message") or (child.text or "").strip()
            break
    return TestCase.model_validate(
        {
            "name": element.get("name", ""),
            "classname": element.get("classname", ""),
            "outcome": outcome,
            "time_s": _seconds(element.get("time")),
            "message": message,
        }
    )


def parse_junit(xml_text: str, source: str) -> TestReport:
    """J1, J2: every ``<testcase>`` of a JUnit XML report, in file order.

    >>> parse_junit('<testsuite><testcase name="t"><skipped message="no GPU"/></testcase></testsuite>', "r.xml")
    TestReport(cases=[TestCase(name='t', classname='', outcome='skipped', time_s=0.0, message='no GPU')])
    >>> parse_junit('<testsuites>\\n<testsuite>\\n</testsuites>', "r.xml")
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: r.xml:3: (xml): mismatched tag: line 3, column 2
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else 1
        raise InputError(source, [(max(line, 1), "(xml)", str(exc))]) from None
    if root.tag not in _ROOTS:
        raise InputError(source, [(1, "(xml)", f"expected <testsuites> or <testsuite>, not <{root.tag}>")])
    return TestReport(cases=[_case(element) for element in root.iter("testcase")])


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0].rstrip()
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 1] + "…"


def report_rows(report: TestReport) -> list[dict[str, str | float]]:
    """The rows of the test stage's table artifact: full name, outcome, seconds and the message's first line.

    >>> from ci_training.models import TestCase
    >>> row = report_rows(TestReport(cases=[TestCase(name="t", outcome="error", message="x" * 300 + "\\nmore")]))[0]
    >>> row["name"], len(row["message"]), row["message"][-1]
    ('t', 200, '…')
    """
    return [
        {
            "name": f"{case.classname}.{case.name}" if case.classname else case.name,
            "outcome": case.outcome,
            "time_s": round(case.time_s, 3),
            "message": _first_line(case.message),
        }
        for case in report.cases
    ]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe(report: TestReport) -> str:
    """J3: the test status's description.

    >>> from ci_training.models import TestCase
    >>> describe(TestReport(cases=[TestCase(name=str(i), outcome="passed") for i in range(10)]))
    '10 passed'
    >>> describe(TestReport(cases=[TestCase(name="a", outcome="passed"), TestCase(name="b", outcome="skipped")]))
    '1 passed, 1 skipped'
    >>> describe(TestReport())
    'no tests ran'
    """
    if report.total == 0:
        return "no tests ran"
    if report.failed:
        return f"{report.failed} failed / {_count(report.total, 'test')}"
    skipped = report.total - report.passed
    return f"{report.passed} passed" + (f", {skipped} skipped" if skipped else "")
