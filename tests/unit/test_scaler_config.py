"""The Auto-Scaler's configuration: the thesis's YAML form loads as is, our keys, errors with file:line:key."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsflow.errors import InputError
from spark_scaler.config import (
    EXAMPLE_THESIS_YAML,
    Endpoints,
    OpsflowConfig,
    ScalerConfig,
    bind_endpoints,
    load_config,
    load_config_text,
    our_policy,
    thesis_policy,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "spark_scaler" / "autoscaler.yaml"


def error_of(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_config_text(text, "a.yaml")
    return info.value


def test_thesis_listing_loads_unchanged() -> None:
    cfg = load_config_text(EXAMPLE_THESIS_YAML)
    assert cfg.general.interval_seconds == 5
    assert cfg.general.cooldown_period_seconds == 180
    assert cfg.general.recurrence_factor == 3
    assert cfg.general.prometheus_url == "http://localhost:9090"
    cpu = cfg.metrics["cpu"]
    assert cpu.query.startswith("sum(rate(container_cpu_user_seconds_total{image")
    assert (cpu.target_utilization, cpu.thresholds.min, cpu.thresholds.max) == (0.5, 0.2, 0.6)
    assert cfg.worker.service_name == "computing_spark-worker"
    assert (cfg.worker.thresholds.min, cfg.worker.thresholds.max) == (1, 30)
    assert cfg.opsflow == OpsflowConfig()  # no opsflow: section → the thesis's policy
    assert cfg.opsflow.policy == "thesis" and cfg.opsflow.scale_in == "never_while_apps"
    assert (cfg.opsflow.tolerance, cfg.opsflow.warmup_seconds, cfg.opsflow.demand_signals) == (0, 0, False)
    windows = (cfg.opsflow.scale_up_stabilization_seconds, cfg.opsflow.scale_down_stabilization_seconds)
    assert windows == (0, 0)


def test_a_switch_of_our_policy_under_the_thesis_policy_names_its_line() -> None:
    text = EXAMPLE_THESIS_YAML + "opsflow:\n  backend: local\n  tolerance: 0.1\n"
    with pytest.raises(InputError) as info:
        load_config_text(text, "a.yaml")
    [(line, field, message)] = info.value.problems
    assert (line, field) == (text.splitlines().index("  tolerance: 0.1") + 1, "opsflow.tolerance")
    assert "add `policy: opsflow`" in message
    ours = load_config_text(text.replace("  backend: local\n", "  policy: opsflow\n"))
    assert ours.opsflow.tolerance == 0.1 and ours.opsflow.scale_in == "graceful" and ours.opsflow.demand_signals


def test_example_file_loads_with_our_keys() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.general.prometheus_url == "http://127.0.0.1:9090"
    assert cfg.opsflow.spark_master_ui_url == "http://127.0.0.1:8080"
    assert cfg.opsflow.backend == "local"
    assert cfg.opsflow.scale_in == "graceful"
    assert cfg.opsflow.demand_signals is True
    assert "\n" not in cfg.metrics["cpu"].query  # folded into one PromQL line
    assert cfg.opsflow.local_stack is True


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("interval_seconds: 5", "interval_seconds: 0", "a.yaml:2: general.interval_seconds: "),
        ("cooldown_period_seconds: 180", "cooldown_period_seconds: -1", "a.yaml:3: general.cooldown_period_seconds: "),
        ("recurrence_factor: 3", "recurrence_factor: 0", "a.yaml:4: general.recurrence_factor: "),
        ("target_utilization: 0.5", "target_utilization: 0", "a.yaml:11: metrics.cpu.target_utilization: "),
        ("max: 0.6", "max: 0.2", "a.yaml:14: metrics.cpu.thresholds.max: must be greater than thresholds.min"),
        ("min: 1", "min: -1", "a.yaml:19: worker.thresholds.min: "),
        ("max: 30", "max: 0", "a.yaml:20: worker.thresholds.max: must be at least worker.thresholds.min (1)"),
        ("target_utilization: 0.5", "target_utilization: half", "a.yaml:11: metrics.cpu.target_utilization: "),
    ],
)
def test_each_invalid_value_names_file_line_and_key(old: str, new: str, where: str) -> None:
    assert old in EXAMPLE_THESIS_YAML
    err = error_of(EXAMPLE_THESIS_YAML.replace(old, new, 1))
    assert str(err).startswith(where), str(err)


def test_missing_key_points_at_its_section() -> None:
    err = error_of(EXAMPLE_THESIS_YAML.replace("    target_utilization: 0.5\n", ""))
    assert str(err).startswith("a.yaml:8: metrics.cpu.target_utilization: Field required")


def test_typo_is_an_unknown_key_and_the_real_key_missing() -> None:
    err = error_of(EXAMPLE_THESIS_YAML.replace("recurrence_factor: 3", "recurence_factor: 3"))
    assert str(err).splitlines() == [
        "a.yaml:1: general.recurrence_factor: Field required",
        "a.yaml:4: general.recurence_factor: unknown key (a typo? see the README for the keys of this section)",
    ]


def test_missing_section_and_every_error_reported() -> None:
    text = EXAMPLE_THESIS_YAML.split("\nworker:")[0].replace("interval_seconds: 5", "interval_seconds: -5")
    err = error_of(text)
    assert [(line, key) for line, key, _ in err.problems] == [(1, "worker"), (2, "general.interval_seconds")]
    assert len(str(err).splitlines()) == 2


def test_our_keys_are_validated() -> None:
    err = error_of(EXAMPLE_THESIS_YAML + "opsflow:\n  backend: kubernetes\n")
    assert str(err).startswith("a.yaml:22: opsflow.backend: Input should be 'local', 'docker' or 'swarm'")
    err = error_of(EXAMPLE_THESIS_YAML + "opsflow:\n  scale_in: sometimes\n")
    assert "a.yaml:22: opsflow.scale_in:" in str(err)
    err = error_of(EXAMPLE_THESIS_YAML + "opsflow:\n  tolerance: 1.5\n")
    assert "a.yaml:22: opsflow.tolerance:" in str(err)


def test_yaml_problems_name_the_line() -> None:
    assert str(error_of("general:\n  a: [1, 2\nmetrics: {}\n")).startswith("a.yaml:3: (yaml): ")
    assert str(error_of("")) == "a.yaml:1: (file): empty; expected the sections general, metrics and worker"
    assert str(error_of("- 1\n")).startswith("a.yaml:1: (file): expected a mapping")
    dup = error_of(
        EXAMPLE_THESIS_YAML.replace("  recurrence_factor: 3\n", "  recurrence_factor: 3\n  recurrence_factor: 1\n")
    )
    assert str(dup) == "a.yaml:5: general.recurrence_factor: key given twice (first on line 4)"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing.yaml:1: \(file\): cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "as.yaml"
    path.write_text(EXAMPLE_THESIS_YAML.replace("max: 30", "max: 0"))
    with pytest.raises(InputError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:20: worker.thresholds.max")
    assert path.read_text() == EXAMPLE_THESIS_YAML.replace("max: 30", "max: 0")  # nothing changed


def test_presets_switch_everything_and_leave_the_rest() -> None:
    cfg = load_config(EXAMPLE)
    thesis = thesis_policy(cfg)
    assert thesis.opsflow.scale_in == "never_while_apps"
    assert thesis.opsflow.tolerance == 0
    assert thesis.opsflow.scale_down_stabilization_seconds == 0
    assert thesis.opsflow.scale_up_stabilization_seconds == 0
    assert thesis.opsflow.warmup_seconds == 0
    assert thesis.opsflow.demand_signals is False
    assert thesis.opsflow.backend == cfg.opsflow.backend
    assert thesis.opsflow.spark_master_ui_url == cfg.opsflow.spark_master_ui_url
    assert (thesis.general, thesis.metrics, thesis.worker) == (cfg.general, cfg.metrics, cfg.worker)

    ours = our_policy(thesis)
    assert ours.opsflow.scale_in == "graceful"
    assert ours.opsflow.demand_signals is True
    assert ours.opsflow.tolerance == OpsflowConfig(policy="opsflow").tolerance > 0
    assert ours.opsflow.warmup_seconds == OpsflowConfig(policy="opsflow").warmup_seconds > 0
    tuned = our_policy(cfg, OpsflowConfig(policy="opsflow", scale_down_stabilization_seconds=7, warmup_seconds=3))
    assert (tuned.opsflow.scale_down_stabilization_seconds, tuned.opsflow.warmup_seconds) == (7, 3)
    assert cfg == load_config(EXAMPLE)  # the input is not changed


def test_config_model_round_trips() -> None:
    cfg = load_config(EXAMPLE)
    assert ScalerConfig.model_validate(cfg.model_dump()) == cfg


def test_example_cpu_query_is_the_one_the_metrics_module_writes() -> None:
    from spark_scaler.metrics import cpu_query

    query = load_config(EXAMPLE).metrics["cpu"].query
    assert query.split() == cpu_query().split()
    assert "spark-python" in query  # PySpark's Python workers, where PySpark code burns its CPU


def test_local_stack_is_short_for_the_blocks_named_local() -> None:
    assert load_config(EXAMPLE).opsflow.block_name == "local"  # the shipped example: `local_stack: true`
    site = EXAMPLE_THESIS_YAML + "opsflow:\n  blocks: site-a\n"
    assert load_config_text(site).opsflow.block_name == "site-a"
    assert load_config_text(EXAMPLE_THESIS_YAML).opsflow.block_name is None  # the URLs of the file
    both = EXAMPLE_THESIS_YAML + "opsflow:\n  local_stack: true\n  blocks: local\n"
    assert load_config_text(both).opsflow.block_name == "local"


def test_local_stack_with_other_blocks_is_an_error_naming_the_section() -> None:
    err = error_of(EXAMPLE_THESIS_YAML + "opsflow:\n  local_stack: true\n  blocks: site-a\n")
    assert err.field == "opsflow" and err.line == 21
    assert "local_stack: true means blocks: local" in str(err)


def test_bound_endpoints_replace_the_urls_of_the_file() -> None:
    cfg = load_config(EXAMPLE)
    bound = bind_endpoints(
        cfg,
        Endpoints(
            prometheus_url="http://prom.site:9090",
            spark_master_url="spark://master.site:7077",
            spark_master_ui_url="http://master.site:8080",
            docker_host="tcp://engine.site:2375",
        ),
    )
    assert bound.general.prometheus_url == "http://prom.site:9090"
    assert (bound.opsflow.master_url, bound.opsflow.spark_master_ui_url) == (
        "spark://master.site:7077",
        "http://master.site:8080",
    )
    assert bound.opsflow.docker_host == "tcp://engine.site:2375"
    assert bound.metrics == cfg.metrics and bound.worker == cfg.worker  # only the URLs change
    assert cfg == load_config(EXAMPLE)  # the input is not changed
    assert bind_endpoints(cfg, Endpoints()) == cfg  # a Block value missing: the file's stays


def test_master_url_defaults_to_port_7077_on_the_uis_host() -> None:
    cfg = load_config_text(EXAMPLE_THESIS_YAML + "opsflow:\n  spark_master_ui_url: http://10.1.2.3:8080\n")
    assert cfg.opsflow.master_url == "spark://10.1.2.3:7077"
