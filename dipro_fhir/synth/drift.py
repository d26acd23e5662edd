"""What changes in a drifting synthetic world, from a given time on (issue 25).

A hospital's data changes under a model without anyone telling it. Four changes, each from
``start`` (in a world of nights, :func:`~dipro_fhir.synth.stream.night_start` of a night: the
data that night is the first to see):

* :class:`UnitSwitch`: a feed switches unit and comes under a new local code no code map
  knows (temperature in °F under ``TEMP-F``): the variable's values stop reaching the model
  and an unmapped code appears;
* :class:`LabStops`: a lab stops arriving (its Observations are no longer sent);
* :class:`ScannerFault`: a scanner (a modality's detectors) delivers films that show no chest,
  which quality control refuses;
* :class:`SubgroupOutcome`: the outcomes of a subgroup (stays admitted from ``start``)
  follow the mirrored severity course, so a model trained on the world gets them wrong
  (applied while generating, :func:`~dipro_fhir.synth.world.generate_cohort`).

:func:`apply_drifts` rewrites one full stay; its ground truth is rebuilt, so a correct mapper
still has a truth to match (an Observation under an unknown code yields no value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from dipro_fhir.mapping.variables import spec_for
from dipro_fhir.synth.records import Demographics, Measurement, SynthObservation, SynthStudy
from dipro_fhir.synth.world import SyntheticPatient, ground_truth

#: The code system of the synthetic hospital's own codes.
LOCAL_SYSTEM: Final[str] = "https://hospital.example.org/CodeSystem/local-observation"


@dataclass(frozen=True, slots=True)
class UnitSwitch:
    """From ``start``, ``variable`` is sent in ``unit`` under the local ``code``."""

    start: datetime
    variable: str = "temperature"
    code: str = "TEMP-F"
    unit: str = "[degF]"
    system: str = LOCAL_SYSTEM

    def measurement(self, m: Measurement) -> Measurement:
        """``m`` as the switched feed sends it (no map knows the code: no canonical value)."""
        if m.variable != self.variable or m.value is None or m.canonical_value is None:
            return m
        conversion = next(c for c in spec_for(m.variable).conversions if c.unit == self.unit)
        value = round((m.canonical_value - conversion.offset) / conversion.scale, 1)
        return Measurement(m.variable, self.code, value, self.unit, None, system=self.system)


@dataclass(frozen=True, slots=True)
class LabStops:
    """From ``start``, no Observation of ``variable`` arrives."""

    start: datetime
    variable: str = "creatinine"


@dataclass(frozen=True, slots=True)
class ScannerFault:
    """From ``start``, every film of ``modality`` (``CR`` or ``DX``) shows no chest."""

    start: datetime
    modality: str = "CR"


@dataclass(frozen=True, slots=True)
class SubgroupOutcome:
    """Stays admitted from ``start`` of patients of ``gender`` die by the mirrored course."""

    start: datetime
    gender: str = "female"

    def inverts(self, demographics: Demographics, admitted: datetime) -> bool:
        """Whether this stay's outcome follows the mirrored course."""
        return admitted >= self.start and demographics.gender == self.gender


Drift = UnitSwitch | LabStops | ScannerFault | SubgroupOutcome


def _observation(o: SynthObservation, drifts: Sequence[Drift]) -> SynthObservation | None:
    for drift in drifts:
        if o.effective < drift.start:
            continue
        if isinstance(drift, LabStops) and any(
            m.variable == drift.variable for m in o.measurements
        ):
            return None
        if isinstance(drift, UnitSwitch) and o.panel_loinc is None:
            o = replace(o, measurements=tuple(drift.measurement(m) for m in o.measurements))
    return o


def _study(study: SynthStudy, drifts: Sequence[Drift]) -> SynthStudy:
    for drift in drifts:
        faulty = isinstance(drift, ScannerFault) and study.modality == drift.modality
        if faulty and study.started >= drift.start:
            study = replace(study, images=tuple(replace(i, faulty=True) for i in study.images))
    return study


def apply_drifts(patient: SyntheticPatient, drifts: Sequence[Drift]) -> SyntheticPatient:
    """One full stay with the data changes of ``drifts`` (outcome changes happen when
    generating), its truth rebuilt."""
    changes = [d for d in drifts if not isinstance(d, SubgroupOutcome)]
    if not changes:
        return patient
    observations = tuple(
        o for o in (_observation(o, changes) for o in patient.observations) if o is not None
    )
    studies = tuple(_study(s, changes) for s in patient.studies)
    truth = ground_truth(
        patient.patient_id, patient.stay, observations, studies, patient.stay.finished
    )
    return replace(patient, observations=observations, studies=studies, truth=truth)
