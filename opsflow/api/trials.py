"""Configuration trials from a notebook or a script: ``opsflow.connect().trials``.

Every ``opsflow trials`` command is one call of :class:`TrialsAPI`:

- :meth:`~TrialsAPI.validate`: load a definition (errors name file, line and field) and say what it will run;
- :meth:`~TrialsAPI.run`: start the ``config-trial`` deployment on the site (returns at once with the run's link);
- :meth:`~TrialsAPI.report`: rebuild a trial's report from the raw data in its folder (markdown, JSON, plots);
- :meth:`~TrialsAPI.calibrate`: an A/A check of the statistics (identical variants, simulated rounds): the
  observed false-positive rate at the definition's rounds and alpha.

Example:
    >>> import opsflow, tempfile
    >>> plan = opsflow.connect(tempfile.mkdtemp()).trials.validate("examples/config_trials/checkpoint.yaml")
    >>> plan.trial, plan.variants, plan.comparisons, plan.runs
    ('checkpoint-interval', ['trigger-2s', 'trigger-6s'], 2, 10)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from config_trials.definition import TrialDefinition, load_definition
from config_trials.judge import TrialReport
from config_trials.stats import smallest_p
from opsflow.errors import NotFoundError

if TYPE_CHECKING:
    from opsflow.api import Site

DEPLOYMENT = "config-trial/config-trial"


class TrialPlan(BaseModel):
    """What a valid definition will run."""

    trial: str
    baseline: str
    variants: list[str]
    metrics: list[str]
    rounds: int
    mode: str
    pairing: str
    comparisons: int
    smallest_p: float
    runs: int
    minutes_at_least: float
    #: the variants whose rounds run on another pool than the trial's own (``cpu``): name -> pool
    elsewhere: dict[str, str] = {}


class TrialRun(BaseModel):
    flow_run_id: str
    name: str
    url: str
    trial_dir: str


class Calibration(BaseModel):
    """A/A: how often identical variants were declared different (should stay near or below alpha)."""

    trials: int
    rounds: int
    alpha: float
    false_positive_rate: float
    per_sample_rate: float


class TrialsAPI:
    """Configuration trials of one site (see the module docstring)."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def validate(self, definition: str | Path) -> TrialPlan:
        """Load ``definition`` (raises :class:`~opsflow.errors.InputError`) and describe the trial it defines."""
        d = load_definition(Path(definition))
        return _plan(d)

    def trial_dir(self, definition: TrialDefinition) -> Path:
        """Where the local stack keeps a trial's raw data and report: ``<home>/trials/<name>``."""
        return self.site.home / "trials" / definition.name

    def run(self, definition: str | Path, trial_dir: str | Path | None = None) -> TrialRun:
        """Start the ``config-trial`` deployment (validated here first); returns at once with the run's link."""
        path = Path(definition)
        d = load_definition(path)
        out = Path(trial_dir) if trial_dir is not None else self.trial_dir(d)
        parameters: dict[str, Any] = {"definition_path": str(path.resolve()), "trial_dir": str(out.resolve())}
        flow_run_id, name, url = self.site.start_deployment(DEPLOYMENT, parameters)
        return TrialRun(flow_run_id=flow_run_id, name=name, url=url, trial_dir=parameters["trial_dir"])

    def report(self, trial_dir: str | Path) -> TrialReport:
        """Rebuild the report of the trial in ``trial_dir`` from its raw data (its ``definition.yaml``, rounds)."""
        from config_trials.report import write_report

        here = Path(trial_dir)
        definition = here / "definition.yaml"
        if not definition.exists():
            raise NotFoundError(f"{here} holds no trial (no definition.yaml)")
        return write_report(here, load_definition(definition, check_module=False))

    def calibrate(self, definition: str | Path, trials: int = 2000, seed: int = 0) -> Calibration:
        """A/A on simulated rounds shaped like the definition's (AR(1) samples, phi 0.9, 60 per round)."""
        from config_trials.calibrate import simulate_aa

        d = load_definition(Path(definition))
        return Calibration(**simulate_aa(d.rounds, d.pairing == "rounds", d.alpha, trials, seed))


def _plan(d: TrialDefinition) -> TrialPlan:
    runs = d.rounds * len(d.variants)
    seconds = runs * d.round_s if d.mode == "sequential" else d.rounds * d.round_s
    return TrialPlan(
        trial=d.name,
        baseline=d.baseline.name,
        variants=[v.name for v in d.variants],
        metrics=list(d.metrics),
        rounds=d.rounds,
        mode=d.mode,
        pairing=d.pairing,
        comparisons=len(d.challengers) * len(d.metrics),
        smallest_p=smallest_p(d.rounds, d.pairing),
        runs=runs,
        minutes_at_least=round(seconds / 60, 1),
        elsewhere={v.name: v.pool for v in d.variants if v.pool != "cpu"},
    )


__all__ = ["Calibration", "TrialPlan", "TrialRun", "TrialsAPI"]
