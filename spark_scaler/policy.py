"""The Auto-Scaler's Analyse and Plan phases (seed §5.4.2, §6.3.2) plus our switches: one pure function.

``decide(obs, state, cfg, now)`` reads one :class:`Observation`, the persisted :class:`ScalerState` and the
configuration, and returns a :class:`Decision` (with a human reason) and the NEW state; it never mutates its
inputs, reads no clock and does no I/O. Rules, in the order they are applied:

1. **Never scale on missing data**: a metric that is absent/None/NaN, a listed problem (Prometheus or the Spark
   master down) or an unknown worker count (negative) → HOLD; heat, cooldown and history stay as they were.
2. **Bounds** (``worker.thresholds``): fewer than ``min`` workers → scale out to ``min``; more than ``max`` → scale
   in to ``max``; always, even during the cooldown or while apps run. Every other target is clamped into them.
3. **Cooldown** (``cooldown_period_seconds``): after an action, HOLD until ``now >= last_action_at + cooldown``;
   the Analyse phase (heat) is not performed meanwhile, as in the thesis.
4. **Scaling Heat** (Algorithm 1, one heat per metric) — when a metric's heat reaches +n/-n, the target is the
   **KHPA formula**, the LARGEST over the metrics that fired (the thesis's rule, for either direction). A scale
   only goes the way its heat fired: a KHPA answer on the wrong side of the current count holds.
5. Thesis scale-in (``scale_in: never_while_apps``): no scale-in while an app runs (seed §6.3.2).

Ours, each switch on its own (``thesis_policy`` turns all of them off):

- ``tolerance``: a metric with ``|utilization / target - 1| <= tolerance`` asks for the current count.
- ``demand_signals``: waiting apps, or more cores wanted than free → scale out at once (no heat needed) to cover
  the cores wanted (``cores_per_worker`` per worker). Nothing running or waiting and every metric at or below its
  lower threshold → scale in to ``min`` (after the down window).
- stabilisation windows (Kubernetes HPA ``behavior``): every tick with data records a *desired* count (the
  largest per-metric KHPA answer, raised to the demand target; ``min`` when idle). A scale-out goes at most to
  the LOWEST desired count of the last ``scale_up_stabilization_seconds`` (0: at once, fast-up); a scale-in only
  to the HIGHEST of the last ``scale_down_stabilization_seconds``, and only once the history covers that window
  (a just-restarted controller waits a full window before shrinking; slow-down).
- ``warmup_seconds``: a worker the backend started less than this ago is warming up. What helps, and what does
  not: the KHPA formula multiplies the count by a utilization *averaged over the workers the metric sees*, so
  ``active * average`` is the total load whichever workers are idle — dropping warming workers from ``active`` (the
  obvious idea) would shrink that total and scale in right after every scale-out. The real harm of a
  new worker is (a) its readings: no executors yet, ``rate()`` windows still full of the old load, so the
  heat would move on stale numbers, and (b) the seconds before it registers at the master, when demand still
  looks unmet and the same worker would be asked for again. So while any worker warms up, the heat is frozen
  and the metrics' desired count is the current one; and young workers the backend runs but the master does
  not yet list (``pending``) count as capacity on its way for scale-out and the lower bound.
- ``scale_in: graceful``: scale-in allowed while apps run (the backend decommissions the worker first).

Persist the returned state only once the action succeeded: on a backend failure keep the previous state, so the
heat is still at n-1 and the next tick retries (no bookkeeping drift).

Example:
    >>> from spark_scaler.config import EXAMPLE_THESIS_YAML, load_config_text, thesis_policy
    >>> cfg = thesis_policy(load_config_text(EXAMPLE_THESIS_YAML))
    >>> state = ScalerState(heat={"cpu": 2})
    >>> d, state = decide(Observation(at=0, active_workers=2, metrics={"cpu": 0.95}), state, cfg, now=0.0)
    >>> d.action.value, d.target, state.heat
    ('scale_out', 4, {'cpu': 0})
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from spark_scaler.config import ScalerConfig
from spark_scaler.heat import hpa_ratio, hpa_target, scaling_heat
from spark_scaler.models import Action, Decision, Observation, ScalerState, WorkerRef

#: The multiplication sign of the reasons ("ceil(2 TIMES 0.95 / 0.5) = 4"), escaped for the linter (RUF001).
TIMES = "\u00d7"
#: ``ScalerState.decisions`` keeps this many, newest last.
MAX_DECISIONS = 50
#: Float noise allowed at the edge of the tolerance band (0.55 / 0.5 - 1 = 0.10000000000000009).
_EPS = 1e-9


@dataclass(frozen=True)
class _MetricStep:
    name: str
    value: float
    heat: int  # after this tick
    fired: Action
    desired: int  # KHPA answer, after tolerance and warm-up
    why: str  # "ceil(2 * 0.95 / 0.5) = 4"


def _g(x: float) -> str:
    return f"{x:.4g}"


def missing_data(obs: Observation, cfg: ScalerConfig) -> list[str]:
    """Why ``obs`` cannot be scaled on (empty: it can). Rule 1: never scale on missing data.

    >>> from spark_scaler.config import EXAMPLE_THESIS_YAML, load_config_text
    >>> missing_data(Observation(at=0, active_workers=1, metrics={"cpu": None}), load_config_text(EXAMPLE_THESIS_YAML))
    ['metric cpu returned nothing']
    """
    why = list(obs.problems)
    if obs.active_workers < 0:
        why.append("active worker count unknown")
    for name in cfg.metrics:
        value = obs.metrics.get(name)
        if value is None:
            why.append(f"metric {name} returned nothing")
        elif not math.isfinite(value):
            why.append(f"metric {name} is {value}")
    return why


def warming_workers(workers: list[WorkerRef], warmup_seconds: float, now: float) -> list[WorkerRef]:
    """Workers started less than ``warmup_seconds`` before ``now`` (``started_at`` 0 means unknown: warm).

    >>> [w.id for w in warming_workers([WorkerRef(id="a", host="h", started_at=95)], 10, now=100)]
    ['a']
    """
    if warmup_seconds <= 0:
        return []
    return [w for w in workers if w.started_at > 0 and now - w.started_at < warmup_seconds]


def _clamp(value: int, cfg: ScalerConfig) -> int:
    bounds = cfg.worker.thresholds
    return max(bounds.min, min(bounds.max, value))


def _bounded(target: int, cfg: ScalerConfig) -> str:
    clamped = _clamp(target, cfg)
    if clamped == target:
        return f"→ {clamped}"
    return f"→ {clamped} ({'max' if clamped < target else 'min'} {clamped})"


def _metric_steps(
    obs: Observation, state: ScalerState, cfg: ScalerConfig, analyse: bool, frozen: bool
) -> list[_MetricStep]:
    """Heat (Algorithm 1) and KHPA answer per metric; heat moves only when ``analyse`` and not ``frozen``."""
    p, n, current = cfg.opsflow, cfg.general.recurrence_factor, obs.active_workers
    steps = []
    for name, m in cfg.metrics.items():
        value = obs.metrics[name]
        assert value is not None  # missing_data() was checked first
        heat, fired = state.heat.get(name, 0), Action.HOLD
        if analyse and not frozen:
            heat, fired = scaling_heat(value, m.thresholds.min, m.thresholds.max, heat, n)
        target = m.target_utilization
        ratio = hpa_ratio(current, value, target)
        why = f"ceil({max(current, 1)} {TIMES} {_g(value)} / {_g(target)}) = {math.ceil(ratio)}"
        desired = hpa_target(current, value, target)
        if frozen:
            desired, why = current, f"{why}, but a worker is warming up: keep {current}"
        elif p.tolerance > 0 and abs(value / target - 1) <= p.tolerance + _EPS:
            desired, why = (
                current,
                f"{why}, but {_g(value)} is within {_g(p.tolerance * 100)}% of {_g(target)}: keep {current}",
            )
        steps.append(_MetricStep(name, value, heat, fired, desired, why))
    return steps


def _prune(history: list[tuple[float, int]], now: float, window: float) -> list[tuple[float, int]]:
    """Entries of the last ``window`` seconds, plus the newest older one (it proves the window is covered)."""
    inside = [(t, d) for t, d in history if t >= now - window]
    older = [(t, d) for t, d in history if t < now - window]
    return older[-1:] + inside


def _covered(history: list[tuple[float, int]], now: float, window: float, max_gap: float) -> bool:
    """The history reaches back ``window`` seconds without a hole longer than ``max_gap`` (a stopped controller
    or missing data): only then does "the highest desired count of the window" speak for the whole window."""
    times = sorted(t for t, _ in history)
    start = [t for t in times if t <= now - window]
    if not start:
        return False
    chain = [t for t in times if t >= start[-1]]
    return all(b - a <= max_gap for a, b in itertools.pairwise(chain))


def decide(obs: Observation, state: ScalerState, cfg: ScalerConfig, now: float) -> tuple[Decision, ScalerState]:
    """One tick of Analyse + Plan: Scaling Heat (Algorithm 1), KHPA formula, bounds, cooldown, our switches.

    Pure; returns the decision and the new state (``state`` is not changed). ``now`` is the tick's time (cooldown,
    windows, warm-up); ``obs.at`` is only informative. See the module docstring for the rules and their order.

    >>> from spark_scaler.config import EXAMPLE_THESIS_YAML, load_config_text
    >>> cfg = load_config_text(EXAMPLE_THESIS_YAML)
    >>> d, _ = decide(Observation(at=0, active_workers=2, metrics={"cpu": None}), ScalerState(), cfg, now=0.0)
    >>> d.action.value, d.reason
    ('hold', 'hold: missing data (metric cpu returned nothing); never scale on missing data')
    """
    current = obs.active_workers
    missing = missing_data(obs, cfg)
    if missing:
        reason = f"hold: missing data ({'; '.join(missing)}); never scale on missing data"
        return _finish(state, now, Action.HOLD, max(current, 0), max(current, 0), reason, state.heat, None)

    p, bounds = cfg.opsflow, cfg.worker.thresholds
    warming = warming_workers(obs.workers, p.warmup_seconds, now)
    # Young workers the backend runs but the master does not list yet: their capacity is on its way.
    pending = min(len(warming), max(0, len(obs.workers) - current))
    provisioned = current + pending
    cooldown_end = None if state.last_action_at is None else state.last_action_at + cfg.general.cooldown_period_seconds
    in_cooldown = cooldown_end is not None and now < cooldown_end

    steps = _metric_steps(obs, state, cfg, analyse=not in_cooldown, frozen=bool(warming))
    heat = {s.name: s.heat for s in steps}
    heat_summary = ", ".join(f"{s.name}={_g(s.value)} heat {s.heat:+d}" for s in steps)
    if warming:
        heat_summary += f"; heat frozen: {len(warming)} worker(s) warming up"

    # Demand signals (ours).
    demand_target: int | None = None
    demand_why = ""
    idle = False
    if p.demand_signals:
        need = obs.cores_wanted - obs.cores_free
        if obs.waiting_apps > 0 or need > 0:
            need = max(need, 1)
            extra = math.ceil(need / p.cores_per_worker)
            demand_target = current + max(extra, pending)
            demand_why = (
                f"demand: {obs.waiting_apps} waiting app(s), {obs.cores_wanted} cores wanted, {obs.cores_free} free"
                f" → +{extra} worker(s) of {p.cores_per_worker} core(s)"
                + (f" ({pending} already starting)" if pending else "")
                + f" = {demand_target}"
            )
        elif obs.running_apps == 0 and all(s.value <= cfg.metrics[s.name].thresholds.min for s in steps):
            idle = True

    # The desired count of this tick, recorded for the stabilisation windows.
    desired = max([s.desired for s in steps] + ([demand_target] if demand_target is not None else []))
    if idle:
        desired = bounds.min
    desired = _clamp(desired, cfg)
    window = max(p.scale_up_stabilization_seconds, p.scale_down_stabilization_seconds)
    history = _prune([*state.recent_targets, (now, desired)], now, window)

    def finish(action: Action, target: int, reason: str) -> tuple[Decision, ScalerState]:
        return _finish(state, now, action, current, target, reason, heat, history)

    # Bounds: always, even in cooldown or while apps run.
    if provisioned < bounds.min:
        target, also = bounds.min, ""
        if not in_cooldown and demand_target is not None and demand_target > target:
            target, also = _clamp(demand_target, cfg), f"; {demand_why} {_bounded(demand_target, cfg)}"
        starting = f" (+{pending} starting)" if pending else ""
        reason = f"bounds: {current} alive{starting} < min {bounds.min} → {bounds.min}{also}"
        return finish(Action.SCALE_OUT, target, reason)
    if current > bounds.max:
        return finish(Action.SCALE_IN, bounds.max, f"bounds: {current} alive > max {bounds.max} → {bounds.max}")

    if in_cooldown and cooldown_end is not None:
        left = f"{_g(cooldown_end - now)} s left"
        return finish(Action.HOLD, current, f"hold: cooldown until t={_g(cooldown_end)} ({left}); {heat_summary}")

    # Scaling Heat + KHPA formula: the largest answer over the metrics that fired (the thesis's rule).
    fired = [s for s in steps if s.fired is not Action.HOLD]
    fired_out = any(s.fired is Action.SCALE_OUT for s in fired)
    out: list[tuple[int, str]] = []
    inn: list[tuple[int, str]] = []
    if fired:
        top = max(fired, key=lambda s: s.desired)
        n = cfg.general.recurrence_factor
        reached = f"+{n} = n" if top.fired is Action.SCALE_OUT else f"-{n} = -n"
        why = f"{top.name} heat {reached}: {top.why}"
        others = [s.name for s in fired if s is not top]
        if others:
            why += f" (largest of fired {', '.join([top.name, *others])})"
        (out if fired_out else inn).append((top.desired, why))
    if demand_target is not None:
        out.append((demand_target, demand_why))
    if idle:
        inn.append(
            (bounds.min, f"idle: no app runs or waits, every metric at or below its lower threshold: min {bounds.min}")
        )

    if out:
        target, why = max(out)
        if p.scale_up_stabilization_seconds > 0:
            floor = min(d for t, d in history if t >= now - p.scale_up_stabilization_seconds)
            if floor < target:
                why += f"; up window {_g(p.scale_up_stabilization_seconds)} s: lowest desired {floor}"
                target = floor
        why = f"{why} {_bounded(target, cfg)}"
        target = _clamp(target, cfg)
        if target > provisioned:
            return finish(Action.SCALE_OUT, target, why)
        starting = f" (+{pending} starting)" if pending else ""
        return finish(Action.HOLD, current, f"hold: {why}, and {current} alive{starting}")

    if inn:
        target, why = max(inn)
        down = p.scale_down_stabilization_seconds
        if down > 0:
            if not _covered(history, now, down, max_gap=3 * cfg.general.interval_seconds):
                return finish(
                    Action.HOLD, current, f"hold: {why}, but the down window ({_g(down)} s) is not yet covered"
                )
            ceiling = max(d for t, d in history if t >= now - down)
            if ceiling > target:
                why += f"; down window {_g(down)} s: highest desired {ceiling}"
                target = ceiling
        why = f"{why} {_bounded(target, cfg)}"
        target = _clamp(target, cfg)
        if target >= current:
            return finish(Action.HOLD, current, f"hold: {why}, not below {current} alive")
        if p.scale_in == "never_while_apps" and obs.running_apps > 0:
            return finish(
                Action.HOLD, current, f"hold: {why}, but {obs.running_apps} app(s) running (no scale-in while apps run)"
            )
        return finish(Action.SCALE_IN, target, why)

    return finish(Action.HOLD, current, f"hold: {heat_summary}")


def _finish(
    state: ScalerState,
    now: float,
    action: Action,
    current: int,
    target: int,
    reason: str,
    heat: dict[str, int],
    history: list[tuple[float, int]] | None,
) -> tuple[Decision, ScalerState]:
    decision = Decision(at=now, action=action, current=current, target=target, reason=reason, heat=dict(heat))
    new_state = ScalerState(
        heat=dict(heat),
        last_action_at=now if action is not Action.HOLD else state.last_action_at,
        recent_targets=list(state.recent_targets if history is None else history),
        decisions=[*state.decisions, decision][-MAX_DECISIONS:],
    )
    return decision, new_state
