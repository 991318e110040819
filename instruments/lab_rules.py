"""What a lab must satisfy on its own, whatever the campaign, checked before any instrument is built.

``athanor run``, ``plan`` and ``schedule add`` refuse a lab that breaks one of these rules (through
:func:`athanor.app.check_against_lab`), before Ray starts or a run folder exists; ``athanor lab
check`` fails the instrument (or the lab) with the same words. None of them builds an instrument,
opens a port or contacts a robot:

- the lab has a liquid handler (every campaign makes its samples with one);
- each simulated instrument's options are valid, checked by the simulated back end's own rules
  (:func:`instruments.backends.simulated.check_simulated_options`);
- no envelope refuses every sample: a pipetting step's smallest volume is not above its largest,
  and a sample fits in a well.

What a campaign needs of a lab (a stock per component, an instrument per objective, enough wells)
is checked against the campaign, not here: a lab without stocks is a valid lab.
"""

from __future__ import annotations

from dataclasses import dataclass

from athanor.errors import InstrumentError
from athanor.lab import NO_LIQUID_HANDLER, InstrumentSpec, LabDescription
from instruments.backends.simulated import check_simulated_options

__all__ = ["LabProblem", "instrument_problems", "lab_problems"]

_ADD_LIQUID_HANDLER = "add one to lab.yaml (instruments: - {name: ..., kind: liquid_handler, ...})"
_OPTIONS_FIX = "correct the instrument's options in lab.yaml"


@dataclass(frozen=True)
class LabProblem:
    """Something that stops every campaign on a lab.

    Attributes:
        instrument: The instrument it is about; None for the lab as a whole.
        topic: What it is about: ``instruments``, ``options`` or ``envelope``.
        detail: What is wrong, one line.
        fix: What to change in the lab file.
    """

    instrument: str | None
    topic: str
    detail: str
    fix: str

    def message(self) -> str:
        """The problem as one line of a refusal: ``lab: where: detail; fix``."""
        where = self.topic if self.instrument is None else f"instrument {self.instrument} ({self.topic})"
        return f"lab: {where}: {self.detail}; {self.fix}"


def lab_problems(lab: LabDescription) -> list[LabProblem]:
    """Every rule of the module docstring that ``lab`` breaks, the lab-wide ones first.

    Args:
        lab: The lab description (already validated as a model).

    Returns:
        One problem per broken rule; empty when the lab can run a campaign as far as it alone goes.
    """
    problems = []
    if not any(spec.kind == "liquid_handler" for spec in lab.instruments):
        problems.append(LabProblem(None, "instruments", NO_LIQUID_HANDLER, _ADD_LIQUID_HANDLER))
    for spec in lab.instruments:
        problems += instrument_problems(spec, lab)
    return problems


def instrument_problems(spec: InstrumentSpec, lab: LabDescription) -> list[LabProblem]:
    """The rules one instrument of ``lab`` breaks: its options, then its envelope."""
    problems = []
    if spec.backend == "simulated":
        try:
            check_simulated_options(spec, lab.time_scale)
        except InstrumentError as error:
            problems.append(LabProblem(spec.name, "options", str(error), _OPTIONS_FIX))
    return problems + _envelope_problems(spec, lab)


def _envelope_problems(spec: InstrumentSpec, lab: LabDescription) -> list[LabProblem]:
    """Envelopes that refuse every sample."""
    envelope, found = spec.envelope, []
    low, high = envelope.min_volume_ul, envelope.max_volume_ul
    if low is not None and high is not None and low > high:
        found.append(
            LabProblem(
                spec.name,
                "envelope",
                f"min_volume_ul ({low:g} µL) is above max_volume_ul ({high:g} µL): every dispense is refused",
                "set envelope.min_volume_ul at most envelope.max_volume_ul",
            )
        )
    well = envelope.max_well_volume_ul
    if spec.kind == "liquid_handler" and well is not None and lab.sample_volume_ul > well:
        found.append(
            LabProblem(
                spec.name,
                "envelope",
                f"a sample (sample_volume_ul={lab.sample_volume_ul:g} µL) overfills a well"
                f" (max_well_volume_ul={well:g} µL): every sample is refused",
                "lower sample_volume_ul or raise envelope.max_well_volume_ul to what the plate's wells hold",
            )
        )
    return found
