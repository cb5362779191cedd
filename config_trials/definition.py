"""A configuration trial's definition: YAML in, a validated :class:`TrialDefinition` out (pure but for one read).

Rules (seed 001, Timon §III-IV; notes ``config-trials-anchors.md`` §1, §3):

- D1 the same application for every variant: one PySpark Structured Streaming module and its arguments; a
  variant changes only Spark configuration and application parameters, and exactly one variant is the baseline.
- D2 the same input for every variant and every rerun: a seeded generator with a rate profile over time (the
  paper's vehicle count rises and falls with the time of day), so a round's input is a function of
  ``(seed, round)`` alone.
- D3 rounds are the unit of analysis: ``rounds`` of ``round_s`` seconds each, the first ``warmup_s`` discarded.
- D4 each metric has a direction (lower or higher is better), an equivalence band (a relative difference
  smaller than it is "same") and may be ``critical`` (a critical regression disqualifies the variant).
- D5 enough rounds to be able to decide: the smallest p-value the exact test can give with ``rounds`` rounds
  must be below the level Holm gives the first of the trial's comparisons (``alpha`` / (challengers x
  metrics), at each look's level in sequential mode), or the trial could never declare a difference: 6 paired
  rounds reach 0.031 at best, too little for 2 comparisons at 0.05; 5 unpaired rounds reach 0.0079.
- D6 ``mode``: ``sequential`` (one variant after another inside each round, in a seeded random order: the fair
  choice on a small machine) or ``parallel`` (all at once, each capped with ``spark.cores.max``).
- D6b ``pool``: where a variant's driver runs. ``cpu`` (the default): inside the trial's own run, on the ``cpu``
  pool; ``gpu``: each of its rounds is a run of the ``variant-round/gpu`` deployment, so a GPU worker's host
  submits it (its Spark settings ask for the GPUs, e.g. ``spark.executor.resource.gpu.amount``); with no GPU
  worker online the variant fails with that reason and the others go on.
- D7 chaos is a seeded schedule of actions at offsets inside a round (in every round or in the rounds listed),
  applied identically to every variant.
- D8 every mistake is reported as ``file:line: field: message``.

Example:
    >>> d = load_definition_text(EXAMPLE_TRIAL_YAML)
    >>> d.baseline.name, [v.name for v in d.variants], d.metrics["latency"].direction
    ('trigger-2s', ['trigger-2s', 'trigger-6s'], 'lower')
    >>> load_definition_text(EXAMPLE_TRIAL_YAML.replace("rounds: 5", "rounds: 4"))
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: trial.yaml:...: rounds: ... 4 unpaired rounds ... p is 0.0286, not below 0.025 ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config_trials.stats import look_alpha, smallest_p
from opsflow.errors import InputError
from opsflow.yaml_lines import line_of, load_mapping, validation_problems

#: The example trial (``examples/config_trials/checkpoint.yaml`` holds the same): the paper's variable, the
#: trigger (checkpoint) interval, at two values on the vehicle-count application.
EXAMPLE_TRIAL_YAML = """\
name: checkpoint-interval
application:
  module: vehicle_counts.py  # next to this file
  arguments: [--window, "10 seconds"]
input:
  seed: 7
  vehicles: {min: 100, max: 300, period_s: 60}
variants:
  - name: trigger-2s
    baseline: true
    parameters: {trigger: "2 seconds"}
  - name: trigger-6s
    parameters: {trigger: "6 seconds"}
rounds: 5
round_s: 20
warmup_s: 5
metrics:
  latency: {direction: lower, critical: true, band: 0.05}
  throughput: {direction: higher, band: 0.05}
alpha: 0.05
mode: sequential
seed: 1
"""


#: names of trials and variants: they name folders, child flow runs and Prefect artifact keys
NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Application(_Strict):
    """D1: the streaming module every variant runs (a path relative to the definition's folder) and its args."""

    module: str = Field(min_length=1)
    arguments: list[str] = []

    @field_validator("module")
    @classmethod
    def _python_file(cls, value: str) -> str:
        if not value.endswith(".py"):
            raise ValueError("must be a .py file")
        return value


class VehicleProfile(_Strict):
    """D2: the vehicle count rises from ``min`` to ``max`` and back over ``period_s`` (a sinusoid, the paper's day)."""

    min: int = Field(ge=1)
    max: int = Field(ge=1)
    period_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> VehicleProfile:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class InputSpec(_Strict):
    """D2: the seeded generator: every vehicle sends one record per second."""

    seed: int
    vehicles: VehicleProfile


class Variant(_Strict):
    """D1: one configuration: Spark settings and application parameters (``--name value`` to the module)."""

    name: str = Field(pattern=NAME)
    baseline: bool = False
    spark: dict[str, str] = {}
    parameters: dict[str, str] = {}
    #: D6b: the work pool whose worker submits the variant's rounds
    pool: Literal["cpu", "gpu"] = "cpu"


class Metric(_Strict):
    """D4: how one metric is judged."""

    direction: Literal["lower", "higher"]
    critical: bool = False
    #: a relative difference of the round medians smaller than this is "same" (0.05: within ±5 %)
    band: float = Field(default=0.05, ge=0, lt=1)


class ChaosAction(_Strict):
    """D7: one injection, ``at_s`` seconds into every variant's round (after the warm-up counts too)."""

    at_s: float = Field(ge=0)
    action: Literal["kill-executor", "stop-worker", "throttle-cpu"]
    #: how long a stopped worker stays stopped or the CPU stays throttled
    for_s: float = Field(default=0, ge=0)
    #: throttle-cpu: the share of one core left to the executors
    quota: float = Field(default=0.5, gt=0, le=1)
    #: the rounds (1-based) it happens in; empty: every round
    rounds: list[int] = []

    def in_round(self, round_index: int) -> bool:
        """Whether it happens in round ``round_index`` (0-based, as the runner counts)."""
        return not self.rounds or round_index + 1 in self.rounds


#: The metrics the runner measures; a definition may judge any of them.
KNOWN_METRICS = ("latency", "throughput", "cpu", "memory")


class TrialDefinition(_Strict):
    """A whole trial (D1-D7); :func:`load_definition` builds it from a file."""

    name: str = Field(pattern=NAME)
    application: Application
    input: InputSpec
    variants: list[Variant] = Field(min_length=2)
    rounds: int = Field(ge=1, le=100)
    round_s: float = Field(gt=0)
    warmup_s: float = Field(default=0, ge=0)
    metrics: dict[str, Metric] = Field(min_length=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    mode: Literal["sequential", "parallel"] = "sequential"
    #: ``none``: the rounds of two variants are independent samples (Mann-Whitney U); ``rounds``: pair them by
    #: round (Wilcoxon signed-rank), which removes a level shared by a round's variants but needs more rounds
    #: (its smallest p with n rounds is 2 / 2**n against Mann-Whitney's 2 / C(2n, n))
    pairing: Literal["none", "rounds"] = "none"
    #: sequential stopping: stop when every comparison is decided, after at least this many rounds
    stop_early_after: int | None = Field(default=None, ge=1)
    seed: int = 0
    chaos: list[ChaosAction] = []

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: dict[str, Metric]) -> dict[str, Metric]:
        unknown = sorted(set(value) - set(KNOWN_METRICS))
        if unknown:
            raise ValueError(f"unknown metric {', '.join(unknown)} (known: {', '.join(KNOWN_METRICS)})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrialDefinition:
        baselines = [v.name for v in self.variants if v.baseline]
        if len(baselines) != 1:
            raise ValueError(f"exactly one variant must be the baseline (got {len(baselines)}: {baselines})")
        names = [v.name for v in self.variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"variant names must be distinct ({', '.join(twice)} given twice)")
        if self.warmup_s >= self.round_s:
            raise ValueError(f"warmup_s ({self.warmup_s:g}) leaves nothing of a round of {self.round_s:g} s")
        late = [c.at_s for c in self.chaos if c.at_s + c.for_s > self.round_s]
        if late:
            raise ValueError(f"a chaos action at {late[0]:g} s does not end inside a round of {self.round_s:g} s")
        outside = sorted({r for c in self.chaos for r in c.rounds if not 1 <= r <= self.rounds})
        if outside:
            raise ValueError(f"chaos in round {outside[0]}, outside rounds 1..{self.rounds}")
        if self.stop_early_after is not None and self.stop_early_after > self.rounds:
            raise ValueError(f"stop_early_after ({self.stop_early_after}) is above rounds ({self.rounds})")
        return self

    @property
    def baseline(self) -> Variant:
        """The one baseline variant."""
        return next(v for v in self.variants if v.baseline)

    @property
    def challengers(self) -> list[Variant]:
        """Every variant but the baseline, in the file's order."""
        return [v for v in self.variants if not v.baseline]


def load_definition_text(text: str, source: str = "trial.yaml") -> TrialDefinition:
    """D8: a definition from YAML text; errors name ``source``, the line and the field."""
    node, data = load_mapping(text, source, "empty trial definition", "expected a mapping (name, application, ...)")
    try:
        definition = TrialDefinition.model_validate(data)
    except ValidationError as exc:
        raise InputError(source, validation_problems(node, exc, "unknown key")) from None
    least = smallest_p(definition.rounds, definition.pairing)
    comparisons = len(definition.challengers) * len(definition.metrics)
    first = look_alpha(definition.alpha, definition.rounds, definition.stop_early_after, definition.pairing)
    first /= comparisons
    if least >= first:
        test = "paired" if definition.pairing == "rounds" else "unpaired"
        raise InputError(
            source,
            [
                (
                    line_of(node, ("rounds",)),
                    "rounds",
                    f"with {definition.rounds} {test} rounds the exact test's smallest p is {least:.3g}, not below "
                    f"{first:.3g} (alpha {definition.alpha:g} shared by Holm over {comparisons} comparisons): no "
                    "difference could ever be declared (add rounds, or judge fewer metrics)",
                )
            ],
        )
    return definition


def load_definition(path: Path, check_module: bool = True) -> TrialDefinition:
    """D8: :func:`load_definition_text` of a file (errors name the file); the module must exist next to it.

    ``check_module=False`` for the copy a trial folder keeps (its report is rebuilt without the application).
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(str(path), [(0, "(file)", exc.strerror or str(exc))]) from None
    definition = load_definition_text(text, str(path))
    module = path.parent / definition.application.module
    if check_module and not module.is_file():
        node = yaml.compose(text)
        line = line_of(node, ("application", "module")) if node is not None else 0
        raise InputError(str(path), [(line, "application.module", f"no such file: {module}")])
    return definition
