"""Trial definitions (config_trials.definition) and the seeded input (config_trials.inputs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config_trials.definition import (
    EXAMPLE_TRIAL_YAML,
    VehicleProfile,
    load_definition,
    load_definition_text,
)
from config_trials.inputs import records, round_hash, vehicles_at
from config_trials.stats import smallest_p
from opsflow.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(InputError) as info:
        load_definition_text(text, "t.yaml")
    assert info.value.source == "t.yaml"
    return info.value.problems


def test_the_example_file_is_the_documented_example() -> None:
    path = ROOT / "examples" / "config_trials" / "checkpoint.yaml"
    assert load_definition(path) == load_definition_text(EXAMPLE_TRIAL_YAML)


def test_the_second_knob_example_varies_shuffle_partitions_at_one_trigger() -> None:
    d = load_definition(ROOT / "examples" / "config_trials" / "partitions.yaml")
    assert {v.parameters["trigger"] for v in d.variants} == {"2 seconds"}
    assert [v.spark["spark.sql.shuffle.partitions"] for v in d.variants] == ["2", "8", "200"]
    assert d.baseline.name == "partitions-2"


def test_the_example_loads_with_its_defaults() -> None:
    d = load_definition_text(EXAMPLE_TRIAL_YAML)
    assert d.baseline.name == "trigger-2s" and [v.name for v in d.challengers] == ["trigger-6s"]
    assert d.mode == "sequential" and d.pairing == "none" and d.alpha == 0.05
    assert d.metrics["latency"].critical and not d.metrics["throughput"].critical
    assert d.application.arguments == ["--window", "10 seconds"]


def test_an_unknown_key_names_its_line() -> None:
    text = EXAMPLE_TRIAL_YAML.replace("warmup_s: 5\n", "warmup_s: 5\nwarmpu: 3\n")
    [(line, field, msg)] = problems(text)
    assert (line, field, msg) == (text.splitlines().index("warmpu: 3") + 1, "warmpu", "unknown key")


def test_a_wrong_value_deep_inside_names_its_line_and_path() -> None:
    text = EXAMPLE_TRIAL_YAML.replace("direction: higher", "direction: up")
    [(line, field, msg)] = problems(text)
    assert field == "metrics.throughput.direction"
    assert "throughput" in text.splitlines()[line - 1]
    assert "'lower' or 'higher'" in msg and "(got 'up')" in msg


def test_two_baselines_and_no_baseline_are_refused() -> None:
    two = EXAMPLE_TRIAL_YAML.replace("  - name: trigger-6s\n", "  - name: trigger-6s\n    baseline: true\n")
    [(_, field, msg)] = problems(two)
    assert field == "(file)" and "exactly one variant must be the baseline (got 2" in msg
    none = EXAMPLE_TRIAL_YAML.replace("    baseline: true\n", "")
    assert "got 0" in problems(none)[0][2]


def test_variant_names_must_be_distinct() -> None:
    text = EXAMPLE_TRIAL_YAML.replace("name: trigger-6s", "name: trigger-2s")
    assert "trigger-2s given twice" in problems(text)[0][2]


def test_too_few_rounds_to_ever_decide_are_refused_with_the_reason() -> None:
    [(line, field, msg)] = problems(EXAMPLE_TRIAL_YAML.replace("rounds: 5", "rounds: 4"))
    assert field == "rounds" and line == EXAMPLE_TRIAL_YAML.splitlines().index("rounds: 5") + 1
    # 2 / C(8, 4) = 0.0286 is below alpha, but not below Holm's first level over 1 variant x 2 metrics.
    assert "smallest p is 0.0286, not below 0.025" in msg and "2 comparisons" in msg
    paired = problems(EXAMPLE_TRIAL_YAML.replace("rounds: 5", "rounds: 6\npairing: rounds"))
    assert "6 paired rounds the exact test's smallest p is 0.0312" in paired[0][2]
    assert load_definition_text(EXAMPLE_TRIAL_YAML.replace("rounds: 5", "rounds: 7\npairing: rounds")).rounds == 7
    # Sequential looks that can never reject spend nothing: paired, 5..8 rounds, only the look after 8 can.
    looks = EXAMPLE_TRIAL_YAML.replace("rounds: 5", "rounds: 8\nstop_early_after: 5\npairing: rounds")
    assert load_definition_text(looks).stop_early_after == 5


def test_smallest_p_matches_the_exact_distributions() -> None:
    assert smallest_p(6, "rounds") == pytest.approx(2 / 64)
    assert smallest_p(3, "none") == pytest.approx(2 / 20)
    assert smallest_p(5, "none") == pytest.approx(2 / 252)


def test_unknown_metric_warm_up_and_chaos_outside_a_round() -> None:
    assert "unknown metric heap" in problems(EXAMPLE_TRIAL_YAML.replace("  throughput:", "  heap:"))[0][2]
    assert "leaves nothing" in problems(EXAMPLE_TRIAL_YAML.replace("warmup_s: 5", "warmup_s: 20"))[0][2]
    late = EXAMPLE_TRIAL_YAML + "chaos:\n  - {at_s: 15, action: stop-worker, for_s: 10}\n"
    assert "does not end inside a round" in problems(late)[0][2]
    bad = EXAMPLE_TRIAL_YAML + "chaos:\n  - {at_s: 5, action: netem}\n"
    [(_, field, _)] = problems(bad)
    assert field == "chaos.0.action"
    beyond = EXAMPLE_TRIAL_YAML + "chaos:\n  - {at_s: 5, action: kill-executor, rounds: [2, 6]}\n"
    assert "chaos in round 6, outside rounds 1..5" in problems(beyond)[0][2]


def test_chaos_happens_in_every_round_or_in_the_rounds_listed() -> None:
    chaos = "chaos:\n  - {at_s: 5, action: kill-executor}\n  - {at_s: 6, action: stop-worker, rounds: [2]}\n"
    text = EXAMPLE_TRIAL_YAML + chaos
    every, second = load_definition_text(text).chaos
    assert [every.in_round(r) for r in range(5)] == [True] * 5
    assert [second.in_round(r) for r in range(5)] == [False, True, False, False, False]


def test_module_must_be_python_and_file_errors_name_the_file(tmp_path: Path) -> None:
    [(_, field, msg)] = problems(EXAMPLE_TRIAL_YAML.replace("vehicle_counts.py", "vehicle_counts.sh"))
    assert field == "application.module" and "must be a .py file" in msg
    with pytest.raises(InputError, match=r"missing.yaml: \(file\)"):
        load_definition(tmp_path / "missing.yaml")
    (tmp_path / "no-app.yaml").write_text(EXAMPLE_TRIAL_YAML)
    with pytest.raises(InputError, match=r"no-app.yaml:3: application.module: no such file: .*vehicle_counts.py"):
        load_definition(tmp_path / "no-app.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml:"):
        load_definition(tmp_path / "broken.yaml")


# --- the seeded input ----------------------------------------------------------------------------------------------
def test_vehicle_count_rises_and_falls_like_the_day() -> None:
    p = VehicleProfile(min=100, max=300, period_s=60)
    counts = [vehicles_at(p, t) for t in range(61)]
    assert counts[0] == 100 and counts[30] == 300 and counts[60] == 100
    assert counts[:31] == sorted(counts[:31]) and counts[30:] == sorted(counts[30:], reverse=True)


def test_records_are_a_function_of_seed_round_and_second_only() -> None:
    p = VehicleProfile(min=5, max=9, period_s=20)
    late_first = [records(1, 2, s, p) for s in reversed(range(10))][::-1]
    assert late_first == [records(1, 2, s, p) for s in range(10)]  # the order of reading changes nothing
    assert records(1, 2, 3, p) != records(2, 2, 3, p) and records(1, 2, 3, p) != records(1, 3, 3, p)
    r = records(1, 2, 3, p)
    assert len(r) == vehicles_at(p, 3) and {x["type"] for x in r} <= {"car", "truck", "bus", "bike"}
    assert all(x["x"] ** 2 + x["y"] ** 2 <= 1000.0**2 + 1 for x in r)


def test_round_hash_is_stable_and_tells_rounds_apart() -> None:
    p = VehicleProfile(min=5, max=9, period_s=20)
    assert round_hash(1, 0, 20, p) == round_hash(1, 0, 20, p)
    assert len({round_hash(1, r, 20, p) for r in range(5)}) == 5
