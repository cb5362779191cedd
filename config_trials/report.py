"""A trial's report from what its rounds left on disk: markdown, JSON with every number, and the paper's plots.

Everything is rebuilt from the trial folder (each round's ``result.json`` and ``metrics.jsonl``, see
:mod:`config_trials.spark_runner`), so ``opsflow trials report DIR`` gives the same report again, or a new one
after a change of the analysis. The plots follow the paper (seed 001 L78): per variant, the samples of each
second since the feed started, the median across rounds, smoothed with an EWMA.

Example (the markdown part, pure):
    >>> from config_trials.definition import EXAMPLE_TRIAL_YAML, load_definition_text
    >>> from config_trials.judge import RoundResult, judge
    >>> d = load_definition_text(EXAMPLE_TRIAL_YAML)
    >>> rows = [RoundResult(variant=v, round=r, values={"latency": lat + r / 100, "throughput": 50.0})
    ...         for v, lat in (("trigger-2s", 1.0), ("trigger-6s", 3.0)) for r in range(5)]
    >>> print(render_markdown(d, judge(d, rows)).splitlines()[6])
    | trigger-6s | latency | worse | 2.96x [2.90, 3.02] | 0.0079 | 0.016 | 5 |
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from config_trials.definition import TrialDefinition
from config_trials.judge import RoundResult, TrialReport, judge
from config_trials.measures import samples
from config_trials.spark_runner import read_events, round_dir
from config_trials.stats import ewma

#: the metrics drawn, as in the paper's figures
PLOTTED = ("latency", "throughput")
UNITS = {"latency": "s", "throughput": "rows/s", "cpu": "cores", "memory": "MiB"}


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}" if value < 0.01 else f"{value:.3f}".rstrip("0")


def render_markdown(definition: TrialDefinition, report: TrialReport) -> str:
    """The verdict table, the variants' standing and the winner, as markdown (a Prefect artifact, a file)."""
    lines = [
        f"# Trial `{report.trial}`: winner **{report.winner or 'none'}**",
        "",
        f"{report.rounds} rounds, {'paired' if report.paired else 'unpaired'} exact tests, Holm over "
        f"{len(report.comparisons)} comparison{'' if len(report.comparisons) == 1 else 's'} at alpha "
        f"{report.tested_at:g}; baseline `{definition.baseline.name}`.",
        "",
        "| variant | metric | verdict | ratio to baseline [CI] | p | p (Holm) | rounds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in report.comparisons:
        effect = "-" if c.ratio is None else f"{c.ratio:.2f}x [{_num(c.ci_low)}, {_num(c.ci_high)}]"
        lines.append(f"| {c.variant} | {c.metric} | {c.verdict} | {effect} | {_p(c.p)} | {_p(c.p_adjusted)} | {c.n} |")
    lines += ["", "| variant | status | rounds | reason |", "| --- | --- | --- | --- |"]
    for o in report.variants.values():
        lines.append(f"| {o.name} | {o.status} | {o.rounds} | {o.reason or '-'} |")
    if not report.input_consistent:
        lines += ["", "**Warning:** the variants of a round did not all read the same input (see report.json)."]
    return "\n".join(lines) + "\n"


def load_results(trial_dir: Path) -> list[RoundResult]:
    """Every round result a trial folder holds (``round-NN/<variant>/result.json``), in round order."""
    found = []
    for path in sorted(trial_dir.glob("round-*/*/result.json")):
        found.append(RoundResult.model_validate_json(path.read_text()))
    return sorted(found, key=lambda r: (r.round, r.variant))


def series(trial_dir: Path, rounds: list[RoundResult], metric: str) -> list[tuple[int, float]]:
    """Per second since the feed started: the median across ``rounds`` (one variant's) of that second's samples."""
    per_second: dict[int, list[float]] = {}
    for result in rounds:
        here = round_dir(trial_dir, result.round, result.variant)
        events = read_events(here / "metrics.jsonl")
        usage = [tuple(u) for u in json.loads((here / "usage.json").read_text())]
        ready = next((float(e["t"]) for e in events if e.get("kind") == "ready"), None)
        by_second: dict[int, list[float]] = {}
        for at, value in samples(events, usage, _feed_start(here, ready))[metric]:
            if at >= 0:
                by_second.setdefault(int(at), []).append(value)
        for second, values in by_second.items():
            per_second.setdefault(second, []).append(statistics.median(values))
    return [(s, statistics.median(v)) for s, v in sorted(per_second.items())]


def _feed_start(here: Path, fallback: float | None) -> float:
    """When the feed of a round started: the first input file's records carry its emit time."""
    first = here / "input" / "s-000000.json"
    lines = first.read_text().splitlines() if first.exists() else []
    if lines and lines[0].strip():
        return float(json.loads(lines[0])["emit_ts"])
    return fallback or 0.0


def write_report(trial_dir: Path, definition: TrialDefinition, span: float = 5.0) -> TrialReport:
    """``report.md``, ``report.json`` (every number) and one PNG per plotted metric, in ``trial_dir``."""
    results = load_results(trial_dir)
    report = judge(definition, results)
    (trial_dir / "report.md").write_text(render_markdown(definition, report))
    (trial_dir / "report.json").write_text(
        json.dumps({"definition": definition.model_dump(), "report": report.model_dump()}, indent=1)
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for metric in (m for m in PLOTTED if m in definition.metrics):
        drawn = {
            v.name: series(trial_dir, [r for r in results if r.variant == v.name and not r.failed], metric)
            for v in definition.variants
        }
        drawn = {name: points for name, points in drawn.items() if points}
        if not drawn:
            continue  # no round left samples of it (every variant failed): no empty plot
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for name, points in drawn.items():
            ax.plot([s for s, _ in points], ewma([x for _, x in points], span), label=name)
        ax.axvline(definition.warmup_s, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("seconds since the feed started")
        ax.set_ylabel(f"{metric} ({UNITS[metric]})")
        ax.set_title(f"{report.trial}: {metric}, median of {report.rounds} rounds, EWMA span {span:g}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(trial_dir / f"{metric}.png", dpi=100)
        plt.close(fig)
    return report
