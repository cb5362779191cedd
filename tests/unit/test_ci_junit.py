"""The test stage's report (ci_training.junit): pytest's --junitxml output counted, tabled, described."""

from __future__ import annotations

import pytest

from ci_training.junit import describe, parse_junit, report_rows
from ci_training.models import TestCase, TestReport
from opsflow.errors import InputError

#: What ``pytest --junitxml=report.xml`` writes (pytest 8, junit_family xunit2) for 5 tests of a training repo.
PYTEST_XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests">
  <testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="3.412"
             timestamp="2026-12-01T12:35:02.123456+01:00" hostname="cpu-worker-1">
    <testcase classname="tests.test_features" name="test_encode_income" time="0.012" />
    <testcase classname="tests.test_model" name="test_fit[depth-6]" time="2.504" />
    <testcase classname="tests.test_model" name="test_auc" time="0.731">
      <failure message="AssertionError: auc 0.61 &lt;= 0.7&#10;assert 0.61 &gt; 0.7">def test_auc():
&gt;       assert auc &gt; 0.7
E       AssertionError: auc 0.61 &lt;= 0.7

tests/test_model.py:21: AssertionError</failure>
    </testcase>
    <testcase classname="tests.test_model" name="test_gpu_fit" time="0.000">
      <skipped type="pytest.skip" message="no GPU">tests/test_model.py:30: no GPU</skipped>
    </testcase>
    <testcase classname="tests.test_data" name="test_load" time="0.090">
      <error message="failed on setup with &quot;FileNotFoundError: data/loans.csv&quot;">fixture 'data' ...</error>
    </testcase>
  </testsuite>
</testsuites>
"""


def case(name: str, outcome: str) -> TestCase:
    return TestCase.model_validate({"name": name, "outcome": outcome})


def test_pytest_report_outcomes_and_times() -> None:
    report = parse_junit(PYTEST_XML, "report.xml")
    assert [(c.name, c.outcome) for c in report.cases] == [
        ("test_encode_income", "passed"),
        ("test_fit[depth-6]", "passed"),
        ("test_auc", "failed"),
        ("test_gpu_fit", "skipped"),
        ("test_load", "error"),
    ]
    assert [c.time_s for c in report.cases] == [0.012, 2.504, 0.731, 0.0, 0.09]
    assert report.cases[2].classname == "tests.test_model"
    assert (report.total, report.passed, report.failed) == (5, 2, 2)


def test_messages_come_from_the_message_attribute() -> None:
    report = parse_junit(PYTEST_XML, "report.xml")
    assert report.cases[2].message == "AssertionError: auc 0.61 <= 0.7\nassert 0.61 > 0.7"
    assert report.cases[3].message == "no GPU"
    assert report.cases[0].message == ""


def test_message_falls_back_to_the_element_text() -> None:
    xml = '<testsuite><testcase name="t"><failure>\n  boom\n  trace</failure></testcase></testsuite>'
    assert parse_junit(xml, "r.xml").cases[0].message == "boom\n  trace"


def test_a_bare_testsuite_root_and_several_suites() -> None:
    bare = '<testsuite name="pytest"><testcase classname="a" name="t1" time="1"/></testsuite>'
    assert parse_junit(bare, "r.xml").total == 1
    two = f"<testsuites>{bare}{bare.replace('t1', 't2')}</testsuites>"
    assert [c.name for c in parse_junit(two, "r.xml").cases] == ["t1", "t2"]


def test_failure_wins_over_a_teardown_error() -> None:
    xml = '<testsuite><testcase name="t"><failure message="f"/><error message="teardown"/></testcase></testsuite>'
    assert parse_junit(xml, "r.xml").cases[0].outcome == "failed"


@pytest.mark.parametrize("time", ["", "abc", "-1"])
def test_an_odd_time_is_zero(time: str) -> None:
    xml = f'<testsuite><testcase name="t" time="{time}"/></testsuite>'
    assert parse_junit(xml, "r.xml").cases[0].time_s == 0.0


def test_an_empty_suite() -> None:
    assert parse_junit('<testsuites><testsuite name="pytest" tests="0"/></testsuites>', "r.xml").total == 0


def test_malformed_xml_names_the_parser_line() -> None:
    truncated = "\n".join(PYTEST_XML.splitlines()[:7])  # cut inside the suite
    with pytest.raises(InputError) as info:
        parse_junit(truncated, "build/report.xml")
    assert info.value.source == "build/report.xml"
    assert info.value.field == "(xml)"
    assert info.value.line == 7


def test_mismatched_tag_line() -> None:
    with pytest.raises(InputError) as info:
        parse_junit("<testsuites>\n<testsuite>\n<testcase name='x'>\n</testsuite>\n", "r.xml")
    assert info.value.line == 4 and "mismatched tag" in str(info.value)


def test_empty_text_is_an_input_error() -> None:
    with pytest.raises(InputError) as info:
        parse_junit("", "r.xml")
    assert info.value.line == 1 and info.value.field == "(xml)"


def test_another_root_element_is_an_input_error() -> None:
    with pytest.raises(InputError) as info:
        parse_junit("<html><body>502 Bad Gateway</body></html>", "r.xml")
    assert info.value.line == 1 and "testsuite" in info.value.problems[0][2]


def test_rows_for_the_table_artifact() -> None:
    rows = report_rows(parse_junit(PYTEST_XML, "report.xml"))
    assert rows[0] == {
        "name": "tests.test_features.test_encode_income",
        "outcome": "passed",
        "time_s": 0.012,
        "message": "",
    }
    assert rows[2]["message"] == "AssertionError: auc 0.61 <= 0.7"
    assert rows[4]["outcome"] == "error"
    assert [set(r) for r in rows] == [{"name", "outcome", "time_s", "message"}] * 5


def test_row_messages_are_truncated_to_200_characters() -> None:
    long = TestCase(name="t", outcome="failed", message="E" * 500)
    message = report_rows(TestReport(cases=[long]))[0]["message"]
    assert isinstance(message, str) and len(message) == 200
    short = TestCase(name="t", outcome="failed", message="E" * 200)
    assert report_rows(TestReport(cases=[short]))[0]["message"] == "E" * 200


def test_describe_counts() -> None:
    assert describe(parse_junit(PYTEST_XML, "r.xml")) == "2 failed / 5 tests"
    assert describe(TestReport(cases=[case(str(i), "passed") for i in range(10)])) == "10 passed"
    assert describe(TestReport(cases=[case("a", "failed")])) == "1 failed / 1 test"
    assert describe(TestReport(cases=[case("a", "passed"), case("b", "skipped")])) == "1 passed, 1 skipped"
    assert describe(TestReport()) == "no tests ran"
