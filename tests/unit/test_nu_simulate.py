"""The rollout simulator: a hand-computed case, its invariants over seeds, determinism, and bad settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from node_update.simulate import SimulationConfig, format_result, node_names, simulate

SEEDS = [1, 2, 3, 4, 5]


def test_all_idle_cluster_has_the_hand_computed_makespan() -> None:
    # 20 idle nodes, res_limit 5, a 10-minute update, a tick every minute:
    # tick 0 reserves 5 nodes, tick 1 starts them, they finish at 11; tick 11 releases them and reserves the next 5
    # (the slot frees in the same tick), which start at 12 and finish at 22; then 33, and the 4th batch at 44.
    result = simulate(SimulationConfig(nodes=20, res_limit=5, utilization=0.0, update_minutes=10, tick_minutes=1))
    assert result.makespan_hours * 60 == pytest.approx(44.0)
    assert result.lower_bound_hours * 60 == pytest.approx(10.0)  # all idle at t=0: one update
    assert result.ratio == pytest.approx(4.4)
    assert result.ticks == 45  # ticks 0..44; tick 44 sees the last result
    assert result.max_reserved == 5
    assert result.planner_calls == 8  # ticks 0, 1, 11, 12, 22, 23, 33, 34: every other tick could not act


def test_res_limit_above_node_count_updates_everything_in_one_round() -> None:
    result = simulate(SimulationConfig(nodes=3, res_limit=10, utilization=0.0, update_minutes=10))
    assert result.makespan_hours * 60 == pytest.approx(11.0)
    assert result.max_reserved == 3


@pytest.mark.parametrize("seed", SEEDS)
def test_invariants_hold_on_busy_clusters(seed: int) -> None:
    cfg = SimulationConfig(nodes=150, res_limit=4, utilization=0.9, mean_job_hours=1.0, update_minutes=7, seed=seed)
    result = simulate(cfg)
    assert 1 <= result.max_reserved <= cfg.res_limit  # F6
    assert result.makespan_hours >= result.lower_bound_hours  # nobody beats the bound
    assert result.ratio >= 1.0
    assert result.planner_calls <= result.ticks


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_pruned_view_gives_the_same_rollout_as_the_full_view(seed: int) -> None:
    cfg = SimulationConfig(nodes=40, res_limit=3, utilization=0.8, mean_job_hours=0.5, update_minutes=5, seed=seed)
    pruned, full = simulate(cfg), simulate(cfg.model_copy(update={"full_view": True}))
    # The same rollout; the count of planner calls may differ (ticks at which it had nothing to do).
    assert pruned.model_dump(exclude={"planner_calls"}) == full.model_dump(exclude={"planner_calls"})


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_pruned_view_gives_the_same_rollout_as_the_full_view_on_a_saturated_cluster(seed: int) -> None:
    cfg = SimulationConfig(nodes=30, res_limit=3, saturated=True, mean_job_hours=0.5, update_minutes=5, seed=seed)
    pruned, full = simulate(cfg), simulate(cfg.model_copy(update={"full_view": True}))
    assert pruned.model_dump(exclude={"planner_calls"}) == full.model_dump(exclude={"planner_calls"})


def test_on_a_saturated_cluster_only_reserving_busy_nodes_finishes() -> None:
    # A freed node goes to the next queued job at once: a tick never sees an idle node that is not reserved.
    cfg = SimulationConfig(nodes=60, res_limit=4, saturated=True, mean_job_hours=1.0, update_minutes=5, max_hours=48)
    old = simulate(cfg.model_copy(update={"reserve_busy": False}))
    assert not old.finished and old.updated == 0 and old.max_reserved == 0
    new = simulate(cfg)
    assert new.finished and new.updated == 60 and 1 <= new.max_reserved <= 4
    assert new.makespan_hours >= new.lower_bound_hours
    # A reserved node sits idle from its job's end to the next tick (1 minute), and after its update to the next.
    assert 0.0 < new.idle_held_minutes_per_update <= 2 * cfg.tick_minutes


def test_fixed_seed_is_deterministic_and_seeds_differ() -> None:
    cfg = SimulationConfig(nodes=200, res_limit=8, utilization=0.95, mean_job_hours=2.0)
    assert simulate(cfg) == simulate(cfg)
    assert simulate(cfg) != simulate(cfg.model_copy(update={"seed": 2}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("res_limit", 0), ("nodes", 0), ("utilization", 1.0), ("utilization", -0.1), ("update_minutes", 0.0)],
)
def test_bad_settings_are_rejected_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        SimulationConfig.model_validate({field: value})


def test_format_result_shows_makespan_bound_and_ratio() -> None:
    text = format_result(simulate(SimulationConfig(nodes=20, res_limit=5, utilization=0.0)))
    assert "makespan" in text and "lower bound" in text
    assert "4.400" in text and "0.73 h" in text and "0.17 h" in text


def test_node_names_are_zero_padded_like_slurm_hostlists() -> None:
    assert node_names(3) == ["nid00001", "nid00002", "nid00003"]
    assert node_names(100000)[-1] == "nid100000"
