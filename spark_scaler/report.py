"""How the scaler's results show themselves: rows of a decision, an observation and the policy in force (pure).

A result made of several parts (a tick: what was seen, what was decided, what was done) mixes in
:class:`SectionsView` and lists its parts in ``sections()``; Jupyter then shows one small table per part, and
a terminal gets the same rows.

Example:
    >>> from spark_scaler.models import Action, Decision
    >>> decision_rows(Decision(at=0, action=Action.HOLD, current=2, target=2, reason="hold: cooldown"))[:2]
    [['action', 'hold'], ['workers', '2 → 2']]
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel

from opsflow.tables import html_table, markdown_table
from spark_scaler.config import ScalerConfig
from spark_scaler.models import Decision, Observation

if TYPE_CHECKING:
    import pandas as pd

#: One part of a result: a title, the column names and the rows (cells as text).
Section = tuple[str, list[str], list[list[str]]]


def _g(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def clock(at: float) -> str:
    """A tick's time as the tables show it (local wall clock).

    >>> len(clock(0.0))
    8
    """
    return time.strftime("%H:%M:%S", time.localtime(at))


def decision_rows(d: Decision) -> list[list[str]]:
    """field/value rows of a decision."""
    heat = ", ".join(f"{name} {value:+d}" for name, value in d.heat.items()) or "—"
    return [["action", d.action.value], ["workers", f"{d.current} → {d.target}"], ["reason", d.reason],
            ["heat", heat], ["at", clock(d.at)]]  # fmt: skip


def observation_rows(obs: Observation) -> list[list[str]]:
    """field/value rows of an observation: the metrics, the master's view, the backend's workers, the problems.

    >>> observation_rows(Observation(at=0, active_workers=1, metrics={"cpu": 0.25}))[0]
    ['metric cpu', '0.25']
    """
    rows = [[f"metric {name}", _g(value)] for name, value in obs.metrics.items()]
    rows += [
        ["ALIVE workers", str(obs.active_workers)],
        ["apps running / waiting", f"{obs.running_apps} / {obs.waiting_apps}"],
        ["cores wanted / free", f"{obs.cores_wanted} / {obs.cores_free}"],
        ["backend workers", ", ".join(w.id for w in obs.workers) or "—"],
    ]
    rows += [["problem", p] for p in obs.problems]
    return rows


def policy_rows(cfg: ScalerConfig) -> list[list[str]]:
    """setting/value rows of the policy in force and where it reads and acts.

    >>> from spark_scaler.config import EXAMPLE_THESIS_YAML, load_config_text
    >>> rows = dict(map(tuple, policy_rows(load_config_text(EXAMPLE_THESIS_YAML))))
    >>> rows["policy"], rows["bounds"]
    ('thesis (Algorithm 1 + KHPA, cooldown, bounds, no scale-in while apps run)', '1 .. 30 workers')
    """
    g, p, w = cfg.general, cfg.opsflow, cfg.worker
    named = {
        "thesis": "thesis (Algorithm 1 + KHPA, cooldown, bounds, no scale-in while apps run)",
        "opsflow": "opsflow (the thesis's rules and the switches below)",
    }
    rows = [
        ["policy", named[p.policy]],
        ["bounds", f"{w.thresholds.min} .. {w.thresholds.max} workers"],
        ["interval / cooldown", f"{_g(g.interval_seconds)} s / {_g(g.cooldown_period_seconds)} s"],
        ["recurrence factor n", str(g.recurrence_factor)],
    ]
    rows += [
        [f"metric {name}", f"target {_g(m.target_utilization)}, thresholds {_g(m.thresholds.min)} .. "
         f"{_g(m.thresholds.max)}"]
        for name, m in cfg.metrics.items()
    ]  # fmt: skip
    rows += [
        ["scale-in", p.scale_in],
        ["tolerance", _g(p.tolerance)],
        ["up / down window", f"{_g(p.scale_up_stabilization_seconds)} s / {_g(p.scale_down_stabilization_seconds)} s"],
        ["warm-up", f"{_g(p.warmup_seconds)} s"],
        ["demand signals", "on" if p.demand_signals else "off"],
        ["backend", p.backend],
        ["Blocks", p.block_name or "— (the URLs of the file)"],
        ["Prometheus", g.prometheus_url],
        ["Spark master", f"{p.master_url} (UI {p.spark_master_ui_url})"],
    ]
    if p.backend != "local":
        rows.append(["Docker engine", p.docker_host or "DOCKER_HOST"])
    return rows


class SectionsView(BaseModel):
    """Mix into a result model and override :meth:`sections`: it then renders as one table per section."""

    def sections(self) -> list[Section]:  # pragma: no cover - every user overrides it
        """The parts of this result: (title, columns, rows)."""
        return []

    def _repr_html_(self) -> str:
        parts = [f"<b>{html.escape(type(self).__name__)}</b>"]
        for title, columns, rows in self.sections():
            parts.append(f"<p><i>{html.escape(title)}</i></p>" + html_table(columns, rows))
        return "".join(parts)

    def _repr_markdown_(self) -> str:
        parts = [f"**{type(self).__name__}**"]
        for title, columns, rows in self.sections():
            parts.append(f"*{title}*\n\n" + markdown_table(columns, rows))
        return "\n\n".join(parts)

    def text(self) -> str:
        """The sections as plain text, one ``name: value`` line per row (for a terminal or a log)."""
        lines = []
        for title, _, rows in self.sections():
            lines.append(f"{title}:")
            lines += [f"  {row[0]}: {' | '.join(row[1:])}" for row in rows]
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """Every row of every section, with its section (pandas)."""
        try:
            import pandas
        except ImportError as exc:  # pragma: no cover - pandas is in the notebook extra and the dev tools
            raise ImportError("to_frame() needs pandas: pip install 'opsflow[notebook]'") from exc
        return pandas.DataFrame(
            [{"section": title, **dict(zip(columns, row, strict=False))} for title, columns, rows in self.sections()
             for row in rows]
        )  # fmt: skip
