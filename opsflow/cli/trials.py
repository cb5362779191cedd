"""`opsflow trials …`: configuration trials; each command is one call of :class:`opsflow.api.trials.TrialsAPI`.

Example:
    $ opsflow trials validate examples/config_trials/checkpoint.yaml
    $ opsflow trials run examples/config_trials/checkpoint.yaml     # the config-trial deployment; prints its link
    $ opsflow trials report .state/trials/checkpoint-interval      # rebuilds report.md, report.json, the plots
    $ opsflow trials calibrate examples/config_trials/checkpoint.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markdown import Markdown

from opsflow.cli._utilities import console, group

if TYPE_CHECKING:
    from opsflow.api.trials import TrialsAPI

app = group("Configuration trials: variants of a streaming pipeline on the same input, compared.")

Definition = Annotated[Path, typer.Argument(help="Trial definition (YAML)")]


def _api() -> TrialsAPI:
    from opsflow.api import connect

    return connect().trials


@app.command()
def validate(definition: Definition) -> None:
    """Check a definition (errors name file, line and field) and show what it will run."""
    plan = _api().validate(definition)
    console.print(
        f"{plan.trial}: {len(plan.variants)} variants ({', '.join(plan.variants)}; baseline {plan.baseline}), "
        f"{plan.rounds} rounds, {plan.mode}, metrics {', '.join(plan.metrics)}\n"
        f"{plan.comparisons} comparisons (Holm), {plan.pairing} rounds: smallest possible p {plan.smallest_p:.3g}\n"
        f"{plan.runs} application runs, at least {plan.minutes_at_least:g} min"
    )
    for variant, pool in plan.elsewhere.items():
        console.print(f"{variant}: its rounds run on the {pool} pool (variant-round/{pool})")


@app.command()
def run(
    definition: Definition,
    trial_dir: Annotated[Path | None, typer.Option(help="Where the raw data and report go")] = None,
) -> None:
    """Start the config-trial deployment on the site; prints the run's page and the trial folder."""
    started = _api().run(definition, trial_dir)
    console.print(f"{started.name}: {started.url}\nraw data and report: {started.trial_dir}")


@app.command()
def report(trial_dir: Annotated[Path, typer.Argument(help="A trial's folder")]) -> None:
    """Rebuild a trial's report from its raw data (report.md, report.json, latency.png, throughput.png)."""
    _api().report(trial_dir)
    console.print(Markdown((trial_dir / "report.md").read_text()))


@app.command()
def calibrate(
    definition: Definition,
    trials: Annotated[int, typer.Option(min=100, help="Simulated A/A trials")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the simulation")] = 0,
) -> None:
    """A/A check of the statistics at the definition's rounds and alpha, on simulated autocorrelated rounds."""
    c = _api().calibrate(definition, trials, seed)
    console.print(
        f"{c.trials} A/A trials of {c.rounds} rounds at alpha {c.alpha:g}: identical variants declared different "
        f"in {c.false_positive_rate:.1%} (one value per round); testing every sample on its own: "
        f"{c.per_sample_rate:.1%}"
    )
