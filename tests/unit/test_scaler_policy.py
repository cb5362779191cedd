"""The policy, rule by rule (thesis first, then each of our switches alone), and its invariants over generated
observation sequences: bounds always hold, no action inside the cooldown except for the bounds, missing data
never acts, the input state is never changed."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spark_scaler.config import EXAMPLE_THESIS_YAML, ScalerConfig, load_config_text
from spark_scaler.models import Action, Decision, Observation, ScalerState, WorkerRef
from spark_scaler.policy import MAX_DECISIONS, decide

HOLD, OUT, IN = Action.HOLD, Action.SCALE_OUT, Action.SCALE_IN
THESIS: dict[str, Any] = {
    "scale_in": "never_while_apps",
    "tolerance": 0,
    "scale_up_stabilization_seconds": 0,
    "scale_down_stabilization_seconds": 0,
    "warmup_seconds": 0,
    "demand_signals": False,
}


def metric(target: float = 0.5, low: float = 0.2, high: float = 0.6) -> dict[str, Any]:
    return {"query": "q", "target_utilization": target, "thresholds": {"min": low, "max": high}}


def config(
    *,
    wmin: int = 1,
    wmax: int = 4,
    n: int = 3,
    cooldown: float = 60,
    interval: float = 5,
    metrics: dict[str, Any] | None = None,
    **switches: Any,
) -> ScalerConfig:
    """The thesis policy (every switch off) unless ``switches`` turn one on."""
    return ScalerConfig.model_validate(
        {
            "general": {
                "interval_seconds": interval,
                "cooldown_period_seconds": cooldown,
                "recurrence_factor": n,
                "prometheus_url": "http://127.0.0.1:9090",
            },
            "metrics": metrics or {"cpu": metric()},
            "worker": {"thresholds": {"min": wmin, "max": wmax}},
            # the thesis's policy as it is named; ours with every switch the thesis's but those given
            "opsflow": {"policy": "opsflow", **THESIS, **switches} if switches else {"policy": "thesis"},
        }
    )


def obs(active: int, cpu: float | None = 0.4, **kw: Any) -> Observation:
    return Observation(at=0, active_workers=active, metrics={"cpu": cpu}, **kw)


def run(
    cfg: ScalerConfig, steps: list[tuple[float, Observation]], state: ScalerState | None = None
) -> tuple[list[Decision], ScalerState]:
    state = state or ScalerState()
    out = []
    for now, o in steps:
        d, state = decide(o, state, cfg, now)
        out.append(d)
    return out, state


def every(interval: float, observations: list[Observation], start: float = 0) -> list[tuple[float, Observation]]:
    return [(start + i * interval, o) for i, o in enumerate(observations)]


# --- rule 1: never scale on missing data ------------------------------------------------------------------------


def test_missing_data_holds_and_keeps_heat_and_cooldown() -> None:
    cfg = config(wmin=2)
    state = ScalerState(heat={"cpu": 2}, last_action_at=-100.0, recent_targets=[(-5.0, 2)])
    cases = [
        (obs(2, None), "metric cpu returned nothing"),
        (Observation(at=0, active_workers=2, metrics={}), "metric cpu returned nothing"),
        (obs(2, math.nan), "metric cpu is nan"),
        (obs(2, 0.95, problems=["prometheus: connection refused"]), "prometheus: connection refused"),
        (obs(-1, 0.95), "active worker count unknown"),
        (obs(0, None), "metric cpu returned nothing"),  # even below the minimum: no data, no action
    ]
    for o, why in cases:
        d, new = decide(o, state, cfg, now=0.0)
        assert d.action is HOLD and why in d.reason and "never scale on missing data" in d.reason
        assert new.heat == {"cpu": 2} and new.last_action_at == -100.0 and new.recent_targets == [(-5.0, 2)]
        assert new.decisions == [d]


# --- thesis: Scaling Heat + KHPA formula, cooldown, bounds, no scale-in while apps run --------------------------


def test_heat_reaching_n_scales_out_with_the_khpa_formula() -> None:
    decisions, state = run(config(), every(5, [obs(2, 0.95)] * 3))
    assert [d.action for d in decisions] == [HOLD, HOLD, OUT]
    assert [d.heat["cpu"] for d in decisions] == [1, 2, 0]
    assert decisions[-1].target == 4
    assert decisions[-1].reason == "cpu heat +3 = n: ceil(2 \u00d7 0.95 / 0.5) = 4 \u2192 4"
    assert state.last_action_at == 10 and state.heat == {"cpu": 0}


def test_target_is_clamped_to_the_maximum() -> None:
    decisions, _ = run(config(wmax=3), every(5, [obs(2, 0.95)] * 3))
    assert (decisions[-1].action, decisions[-1].target) == (OUT, 3)
    assert decisions[-1].reason.endswith("= 4 \u2192 3 (max 3)")


def test_already_at_the_maximum_holds_but_heat_resets() -> None:
    decisions, state = run(config(wmax=2), every(5, [obs(2, 0.95)] * 3))
    assert decisions[-1].action is HOLD and "not" not in decisions[-1].reason
    assert decisions[-1].reason.startswith("hold: cpu heat +3 = n") and state.heat == {"cpu": 0}
    assert state.last_action_at is None  # no action, no cooldown


def test_largest_answer_over_the_metrics_that_fired() -> None:
    cfg = config(wmax=10, metrics={"cpu": metric(), "mem": metric(), "gpu": metric()})
    state = ScalerState(heat={"cpu": 2, "mem": 2, "gpu": 0})
    # cpu and mem fire (ceil(2*0.7/0.5)=3, ceil(2*0.9/0.5)=4); gpu would answer 8 but has not fired.
    o = Observation(at=0, active_workers=2, metrics={"cpu": 0.7, "mem": 0.9, "gpu": 1.9})
    d, new = decide(o, state, cfg, now=0.0)
    assert (d.action, d.target) == (OUT, 4)
    assert d.reason.startswith("mem heat +3 = n") and "largest of fired mem, cpu" in d.reason
    assert new.heat == {"cpu": 0, "mem": 0, "gpu": 1}


def test_heat_scale_in_and_no_scale_in_while_apps_run() -> None:
    cfg = config()
    decisions, state = run(cfg, every(5, [obs(4, 0.1)] * 3))
    assert (decisions[-1].action, decisions[-1].target) == (IN, 1)  # ceil(4 * 0.1 / 0.5) = 1
    assert decisions[-1].reason == "cpu heat -3 = -n: ceil(4 \u00d7 0.1 / 0.5) = 1 \u2192 1"

    decisions, state = run(cfg, every(5, [obs(4, 0.1, running_apps=1)] * 3))
    assert decisions[-1].action is HOLD and "1 app(s) running" in decisions[-1].reason
    assert state.heat == {"cpu": 0} and state.last_action_at is None  # Algorithm 1 resets anyway


def test_scale_only_in_the_direction_the_heat_fired() -> None:
    # Upper threshold below the target: overload fires, but the formula asks for fewer workers → hold.
    cfg = config(metrics={"cpu": metric(target=0.9, low=0.1, high=0.5)})
    decisions, _ = run(cfg, every(5, [obs(3, 0.6)] * 3))
    assert decisions[-1].action is HOLD and "ceil(3 \u00d7 0.6 / 0.9) = 2" in decisions[-1].reason


def test_cooldown_holds_without_analysing_then_resumes() -> None:
    cfg = config(cooldown=60, wmax=10)
    _, state = run(cfg, every(5, [obs(2, 0.95)] * 3))
    assert state.last_action_at == 10
    d, state2 = decide(obs(4, 0.99), state, cfg, now=69.9)
    assert d.action is HOLD and d.reason.startswith("hold: cooldown until t=70 (0.1 s left)")
    assert state2.heat == {"cpu": 0}  # heat not computed during the cooldown (seed §6.3.2)
    d, state3 = decide(obs(4, 0.99), state2, cfg, now=70.0)  # now >= last_action_at + cooldown
    assert d.action is HOLD and state3.heat == {"cpu": 1}


def test_bounds_hold_regardless_of_heat_cooldown_and_apps() -> None:
    cfg = config(wmin=2, wmax=4, cooldown=600)
    in_cooldown = ScalerState(last_action_at=0.0)
    d, new = decide(obs(0, 0.0), in_cooldown, cfg, now=1.0)
    assert (d.action, d.target) == (OUT, 2) and d.reason == "bounds: 0 alive < min 2 \u2192 2"
    assert new.last_action_at == 1.0
    d, _ = decide(obs(6, 0.99, running_apps=3), in_cooldown, cfg, now=1.0)
    assert (d.action, d.target) == (IN, 4) and d.reason == "bounds: 6 alive > max 4 \u2192 4"
    d, _ = decide(obs(1, 0.1), ScalerState(), config(wmin=2, n=1), now=1.0)  # heat says in, bounds say out
    assert (d.action, d.target) == (OUT, 2)


def test_hold_reason_shows_the_heat() -> None:
    d, _ = decide(obs(2, 0.7), ScalerState(), config(), now=0.0)
    assert (d.action, d.target, d.current) == (HOLD, 2, 2) and d.reason == "hold: cpu=0.7 heat +1"


def test_decisions_keep_the_last_50_and_the_input_is_not_changed() -> None:
    cfg = config()
    state = ScalerState(heat={"cpu": 1})
    before = state.model_dump()
    decisions, new = run(cfg, every(5, [obs(2, 0.4)] * 60), state)
    assert state.model_dump() == before
    assert len(new.decisions) == MAX_DECISIONS and new.decisions[-1] == decisions[-1]
    assert new.decisions[0] == decisions[10]


# --- ours, each switch alone ------------------------------------------------------------------------------------


def test_tolerance_band_asks_for_no_change() -> None:
    tight = {"cpu": metric(target=0.5, low=0.2, high=0.52)}
    decisions, _ = run(config(wmax=10, n=1, metrics=tight, tolerance=0.1), [(0, obs(4, 0.55))])
    assert decisions[0].action is HOLD and "within 10% of 0.5: keep 4" in decisions[0].reason
    decisions, _ = run(config(wmax=10, n=1, metrics=tight, tolerance=0.0), [(0, obs(4, 0.55))])
    assert (decisions[0].action, decisions[0].target) == (OUT, 5)  # ceil(4.4)


def test_demand_scales_out_at_once_to_cover_the_cores_wanted() -> None:
    cfg = config(wmax=10, demand_signals=True)
    d, new = decide(obs(1, 0.4, waiting_apps=1, cores_wanted=3, cores_free=0), ScalerState(), cfg, now=0.0)
    assert (d.action, d.target) == (OUT, 4) and d.reason.startswith("demand: 1 waiting app(s), 3 cores wanted, 0 free")
    assert new.heat == {"cpu": 0}  # no heat needed
    d, _ = decide(
        obs(1, 0.4, running_apps=1, cores_wanted=3, cores_free=0),
        ScalerState(),
        cfg.model_copy(update={"opsflow": cfg.opsflow.model_copy(update={"cores_per_worker": 2})}),
        now=0.0,
    )
    assert (d.action, d.target) == (OUT, 3)  # ceil(3 / 2) = 2 more
    d, _ = decide(obs(1, 0.4, waiting_apps=1, cores_wanted=0, cores_free=1), ScalerState(), cfg, now=0.0)
    assert (d.action, d.target) == (OUT, 2)  # waiting with cores free (memory?): one more
    d, _ = decide(obs(3, 0.4, waiting_apps=2, cores_wanted=40), ScalerState(), cfg, now=0.0)
    assert (d.action, d.target) == (OUT, 10) and d.reason.endswith("(max 10)")
    d, _ = decide(obs(1, 0.4, waiting_apps=1, cores_wanted=3), ScalerState(), config(wmax=10), now=0.0)
    assert d.action is HOLD  # switch off: the thesis waits for heat


def test_demand_counts_workers_still_starting() -> None:
    cfg = config(wmax=10, demand_signals=True, warmup_seconds=20)
    workers = [
        WorkerRef(id="w0", host="127.0.0.2", started_at=1.0),
        WorkerRef(id="w1", host="127.0.0.3", started_at=95),
    ]
    o = obs(1, 0.4, waiting_apps=1, cores_wanted=1, cores_free=0, workers=workers)
    d, _ = decide(o, ScalerState(), cfg, now=100.0)  # w1 started 5 s ago, not at the master yet
    assert d.action is HOLD and "(1 already starting)" in d.reason
    o = obs(1, 0.4, waiting_apps=1, cores_wanted=3, cores_free=0, workers=workers)
    d, _ = decide(o, ScalerState(), cfg, now=100.0)
    assert (d.action, d.target) == (OUT, 4)  # 3 more cores: the starting one plus two


def test_idle_scales_in_to_min_after_the_down_window() -> None:
    cfg = config(wmin=1, demand_signals=True, scale_down_stabilization_seconds=30)
    decisions, _ = run(cfg, every(5, [obs(4, 0.05)] * 7))
    assert [d.action for d in decisions] == [HOLD] * 6 + [IN]
    assert "down window (30 s) is not yet covered" in decisions[0].reason
    assert decisions[-1].target == 1 and decisions[-1].reason.startswith("idle: no app runs or waits")


def test_down_window_keeps_the_highest_desired_count() -> None:
    cfg = config(wmin=1, wmax=10, demand_signals=True, scale_down_stabilization_seconds=30)
    busy = obs(4, 0.5, running_apps=1)  # on target: desired 4
    decisions, _ = run(cfg, every(5, [busy] * 7 + [obs(4, 0.05)] * 6))
    assert all(d.action is HOLD for d in decisions)  # a desired 4 is still inside the window
    decisions, _ = run(cfg, every(5, [busy] * 7 + [obs(4, 0.05)] * 7))
    assert (decisions[-1].action, decisions[-1].target) == (IN, 1)


def test_heat_scale_in_is_raised_to_the_window_maximum() -> None:
    cfg = config(wmax=10, n=1, scale_down_stabilization_seconds=10, scale_in="graceful")
    steps = every(5, [obs(4, u, running_apps=1) for u in (0.5, 0.35, 0.35, 0.1)])
    decisions, _ = run(cfg, steps)
    # desired 4 at t=0 (outside the window at t=15), 3 at t=5 and 10: the scale-in goes to 3, not to ceil(0.8) = 1
    assert (decisions[-1].action, decisions[-1].target) == (IN, 3)
    assert "down window 10 s: highest desired 3" in decisions[-1].reason


def test_window_with_a_hole_is_not_covered() -> None:
    cfg = config(wmin=1, demand_signals=True, scale_down_stabilization_seconds=30, interval=5)
    # a controller stopped for 100 s: an old record does not speak for the last 30 s
    state = ScalerState(recent_targets=[(0.0, 1)])
    d, state = decide(obs(4, 0.05), state, cfg, now=100.0)
    assert d.action is HOLD and "not yet covered" in d.reason


def test_up_window_scales_out_to_the_lowest_desired() -> None:
    cfg = config(wmax=10, n=1, scale_up_stabilization_seconds=10)
    decisions, _ = run(cfg, every(5, [obs(2, 0.5), obs(2, 0.95)]))
    assert decisions[-1].action is HOLD and "up window 10 s: lowest desired 2" in decisions[-1].reason
    decisions, _ = run(cfg, every(5, [obs(2, 0.55), obs(2, 0.95)]))
    assert (decisions[-1].action, decisions[-1].target) == (OUT, 3)  # min(ceil(2.2), ceil(3.8))


def test_warmup_freezes_heat_and_counts_every_alive_worker() -> None:
    cfg = config(wmax=10, warmup_seconds=20)
    young = [WorkerRef(id="w2", host="127.0.0.4", started_at=90.0)]
    d, state = decide(obs(3, 0.99, workers=young), ScalerState(heat={"cpu": 2}), cfg, now=100.0)
    assert d.action is HOLD and state.heat == {"cpu": 2} and "1 worker(s) warming up" in d.reason
    d, state = decide(obs(3, 0.99, workers=young), state, cfg, now=110.0)  # 20 s old: warm
    assert (d.action, d.target) == (OUT, 6)  # ceil(3 * 0.99 / 0.5): all three alive workers count


def test_graceful_scale_in_while_apps_run() -> None:
    decisions, _ = run(config(scale_in="graceful"), every(5, [obs(4, 0.1, running_apps=1)] * 3))
    assert (decisions[-1].action, decisions[-1].target) == (IN, 1)


# --- invariants -------------------------------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ScalerConfig, list[tuple[float, dict[str, Any]]]]:
    wmin = draw(st.integers(0, 3))
    names = draw(st.sampled_from([["cpu"], ["cpu", "gpu"]]))
    cfg = config(
        wmin=wmin,
        wmax=draw(st.integers(wmin, 6)),
        n=draw(st.integers(1, 3)),
        cooldown=draw(st.sampled_from([0, 10, 30])),
        metrics={name: metric() for name in names},
        scale_in=draw(st.sampled_from(["never_while_apps", "graceful"])),
        tolerance=draw(st.sampled_from([0, 0.1])),
        scale_up_stabilization_seconds=draw(st.sampled_from([0, 10])),
        scale_down_stabilization_seconds=draw(st.sampled_from([0, 15])),
        warmup_seconds=draw(st.sampled_from([0, 10])),
        demand_signals=draw(st.booleans()),
        cores_per_worker=draw(st.integers(1, 2)),
    )
    level = st.one_of(st.floats(0, 1.5), st.sampled_from([0.05, 0.1, 0.4, 0.5, 0.55, 0.7, 0.95]))
    tick = st.fixed_dictionaries(
        {
            # mostly the backend did what the last decision asked; sometimes workers appear or die
            "active": st.one_of(st.none(), st.none(), st.none(), st.integers(0, 8)),
            "metrics": st.fixed_dictionaries({name: level for name in names}),
            # mostly good data; sometimes one of the ways data goes missing
            "spoil": st.sampled_from(["ok"] * 12 + ["none", "nan", "absent", "problem", "unknown"]),
            "running_apps": st.integers(0, 2),
            "waiting_apps": st.integers(0, 2),
            "cores_wanted": st.integers(0, 8),
            "cores_free": st.integers(0, 4),
            "ages": st.lists(st.sampled_from([None, 1.0, 5.0, 30.0]), max_size=5),
        }
    )
    steps = draw(st.lists(st.tuples(st.sampled_from([0.0, 1.0, 5.0, 7.0, 20.0]), tick), max_size=40))
    return cfg, steps


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_invariants_over_random_sequences(scenario: tuple[ScalerConfig, list[tuple[float, dict[str, Any]]]]) -> None:
    cfg, steps = scenario
    names = list(cfg.metrics)
    lo, hi = cfg.worker.thresholds.min, cfg.worker.thresholds.max
    cooldown = cfg.general.cooldown_period_seconds
    state, now, active = ScalerState(), 1000.0, lo
    for dt, t in steps:
        now += dt
        active = active if t["active"] is None else t["active"]
        workers = [
            WorkerRef(id=f"w{i}", host=f"127.0.0.{i + 2}", started_at=0.0 if age is None else now - age)
            for i, age in enumerate(t["ages"])
        ]
        metrics: dict[str, float | None] = dict(t["metrics"])
        spoil = t["spoil"]
        if spoil in ("none", "nan"):
            metrics[names[-1]] = None if spoil == "none" else math.nan
        elif spoil == "absent":
            del metrics[names[0]]
        o = Observation(
            at=now,
            active_workers=-1 if spoil == "unknown" else active,
            metrics=metrics,
            running_apps=t["running_apps"],
            waiting_apps=t["waiting_apps"],
            cores_wanted=t["cores_wanted"],
            cores_free=t["cores_free"],
            workers=workers,
            problems=["prometheus: connection refused"] if spoil == "problem" else [],
        )
        before = state.model_dump()
        d, new = decide(o, state, cfg, now)
        assert state.model_dump() == before  # pure: the input is not changed
        missing = spoil != "ok"
        if missing:  # missing data never acts, and changes nothing but the decision log
            assert d.action is HOLD
            assert (new.heat, new.last_action_at, new.recent_targets) == (
                state.heat,
                state.last_action_at,
                state.recent_targets,
            )
        if d.action is HOLD:
            assert d.target == d.current
            assert new.last_action_at == state.last_action_at
        else:
            assert lo <= d.target <= hi  # bounds never violated
            assert (d.target > d.current) if d.action is OUT else (d.target < d.current)
            assert new.last_action_at == now
            in_cooldown = state.last_action_at is not None and now < state.last_action_at + cooldown
            if in_cooldown:  # no action inside the cooldown except for the bounds
                assert d.reason.startswith("bounds") and (d.current < lo or d.current > hi)
            if d.action is IN and cfg.opsflow.scale_in == "never_while_apps" and t["running_apps"] > 0:
                assert d.current > hi  # the thesis scales in while apps run only back into the bounds
        if not missing and active > hi:
            assert (d.action, d.target) == (IN, hi)
        if not missing and active + len(workers) < lo:  # below the minimum, nothing starting
            assert d.action is OUT and d.target >= lo
        assert len(new.decisions) <= MAX_DECISIONS and new.decisions[-1] == d
        state, active = new, d.target


def ticks_of(cfg: ScalerConfig, readings: list[float], running_apps: int) -> list[Decision]:
    """``decide`` every interval over ``readings`` of cpu, from 4 workers, acting as a tick would."""
    state, active, out = ScalerState(), 4, []
    for i, cpu in enumerate(readings):
        now = i * cfg.general.interval_seconds
        d, state = decide(Observation(at=now, active_workers=active, metrics={"cpu": cpu},
                                      running_apps=running_apps), state, cfg, now)  # fmt: skip
        active = d.target if d.action != Action.HOLD else active
        out.append(d)
    return out


def test_listing_6_6_unchanged_never_scales_in_while_an_app_runs_and_policy_opsflow_does() -> None:
    thesis = load_config_text(EXAMPLE_THESIS_YAML)
    assert thesis.opsflow.policy == "thesis"
    low = [0.05] * 200  # 1,000 s of an almost idle application on 4 workers
    assert {d.action for d in ticks_of(thesis, low, running_apps=1)} == {Action.HOLD}
    assert any("app(s) running (no scale-in while apps run)" in d.reason for d in ticks_of(thesis, low, 1))
    ours = load_config_text(EXAMPLE_THESIS_YAML + "opsflow:\n  policy: opsflow\n")
    scale_ins = [d for d in ticks_of(ours, low, running_apps=1) if d.action == Action.SCALE_IN]
    assert scale_ins and scale_ins[-1].target == ours.worker.thresholds.min
    assert ours.opsflow.scale_in == "graceful"  # the backend decommissions each worker first
