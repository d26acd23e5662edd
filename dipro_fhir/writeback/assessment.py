"""Scores become FHIR R4 ``RiskAssessment``, ``Device`` and ``Provenance`` resources (raw JSON).

One RiskAssessment per patient, task, model version and as-of time, with one
``prediction`` per outcome of the task. Choices, each with the element it concerns:

* ``RiskAssessment.prediction.probabilityDecimal``: the R4 element comment says a decimal
  probability is a percentage (invariant ras-2: ``<= 100``) while HL7's examples use
  fractions. ``probability_scale`` chooses; the default ``percent`` follows the specification.
  ras-1 and ras-2 are checked here because fhir.resources checks no invariants.
* ``prediction.qualitativeRisk``: ``risk-probability`` low/moderate/high by thresholds.
* ``prediction.whenPeriod``: mortality is *in-hospital* mortality, so the period starts at the
  as-of time and stays open (ends at discharge, unknown yet). Length of stay concerns the
  stay: the period starts at the stay's start when known, else at the as-of time.
  Progression is about the latest CXR pair already taken: no ``when``.
* ``basis``: at most ``max_basis`` references: every ImagingStudy first (most recent first),
  then the most recent Observations. ``Score.basis`` lists resources in the order they were
  used, oldest first, so "most recent" is "last listed". A shortened basis is said in ``note``.
* ``basis`` and ``Provenance.entity`` point at the source data either literally
  (``Observation/123``, resolvable on the server the data came from) or, with
  ``source_references="identifier"``, logically (R4 ``Reference.identifier``): ``type``,
  an identifier with system ``urn:ietf:rfc:3986`` whose value is the resource's URI
  (``<source base>/Observation/123``, or ``file:///<folder>/Observation/123`` when the
  data came from NDJSON files) and a ``display``. Servers that enforce referential
  integrity on write (HAPI's default) accept logical references to resources they do not
  hold.
* ``method``: the model, as text and a coding in the project's model CodeSystem; the
  ``performer`` is the model's ``Device``.
* ``meta.security``: HL7 AI-transparency label ``AIAST``; Device, model card and
  Provenance follow AI Transparency on FHIR 1.0.0-ballot (:mod:`.transparency`).
* Fewer than two CXRs (``Score.path == "ehr_only"``): ``note`` says "scored without CXR
  pairs (EHR-only path)".
* Regions missing on a radiograph used (not placed, or failed region quality control, issue
  11) are named in a ``note``, with the number of radiographs left out because their whole
  placement failed quality control.
* The model card's cautions (:mod:`dipro_fhir.core.model_use`: not for clinical use, not
  validated, intended use not stated) are the first ``note``, when the model is given.
* ``text``: a narrative generated from the elements above (:mod:`.narrative`; issue 24).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from dipro.vocab import REGIONS
from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.core.model_use import model_use
from dipro_fhir.core.risk import RISK_DISPLAY, RISK_PROBABILITY_SYSTEM, RiskThresholds
from dipro_fhir.core.risk import classify_risk as _classify
from dipro_fhir.core.scores import ModelInfo, Score, outcomes_for
from dipro_fhir.core.settings import WriteBackSettings
from dipro_fhir.core.timeline import ResourceRef
from dipro_fhir.fhir.resources import validate_resource
from dipro_fhir.writeback import codes, transparency
from dipro_fhir.writeback.narrative import check_narrative, narrative

EHR_ONLY_NOTE = "scored without CXR pairs (EHR-only path)"
REGIONS_MISSING_NOTE = "anatomical regions missing on the radiographs used (model padding)"
FILMS_NOT_USED_NOTE = "region placement failed quality control"
FILMS_LEFT_OUT_NOTE = "films of the window not used (resource, reason)"
FROM_THORAX_NOTE = (
    "films used with regions placed from the thorax outline (white lungs: lung fields not "
    "measurable; regions less sure)"
)
#: At most this many films are named in the note (the rest are counted).
MAX_FILMS_NAMED = 10
SOURCE_URI_SYSTEM = "urn:ietf:rfc:3986"
UCUM = "http://unitsofmeasure.org"
AI_LABEL = {
    "system": codes.AI_LABEL_SYSTEM,
    "code": codes.AI_LABEL_CODE,
    "display": codes.AI_LABEL_DISPLAY,
}


@dataclass(frozen=True, slots=True)
class AssessmentOptions:
    """How RiskAssessments are expressed and sent (mirrors ``settings.WriteBackSettings``)."""

    probability_scale: Literal["percent", "fraction"] = "percent"
    thresholds: RiskThresholds = field(default_factory=RiskThresholds)
    max_basis: int = 50
    transaction_size: int = 100
    source_references: Literal["literal", "identifier"] = "literal"
    source_base: str | None = None
    identifier_fallback: bool = True
    source_uri_base: str | None = None  # absolute: the FHIR base, or file:// of the files

    @classmethod
    def from_settings(
        cls,
        settings: WriteBackSettings,
        *,
        source_base: str | None = None,
        source_files: Path | None = None,
    ) -> AssessmentOptions:
        """Build the options from the write-back settings.

        Args:
            settings: The write-back settings.
            source_base: The FHIR base the data came from (``None``: files). With
                ``source_references="auto"`` references are literal when the data came from
                the server written to, identifiers otherwise.
            source_files: The NDJSON folder the data came from, when not a server: an
                identifier's URI is then ``file://<folder>/Type/id`` (absolute, as
                ``urn:ietf:rfc:3986`` requires).
        """
        form = settings.source_references
        fallback = form == "auto"
        if form == "auto":
            same_server = settings.target == "fhir" and source_base is not None
            form = "literal" if same_server else "identifier"
        return cls(
            probability_scale=settings.probability_scale,
            thresholds=RiskThresholds(settings.moderate_risk_at, settings.high_risk_at),
            max_basis=settings.max_basis,
            transaction_size=settings.transaction_size,
            source_references=form,
            source_base=source_base.rstrip("/") if source_base else None,
            identifier_fallback=fallback,
            source_uri_base=(
                source_base.rstrip("/")
                if source_base
                else source_files.resolve().as_uri()
                if source_files is not None
                else None
            ),
        )

    def source_reference(self, ref: ResourceRef) -> dict[str, Any]:
        """Return the FHIR ``Reference`` to a source resource in the configured form."""
        if self.source_references == "literal":
            return {"reference": ref.reference}
        base = self.source_uri_base or self.source_base
        uri = f"{base}/{ref.reference}" if base else ref.reference
        return {
            "type": ref.resource_type,
            "identifier": {"system": SOURCE_URI_SYSTEM, "value": uri},
            "display": ref.reference,
        }


def select_basis(refs: Sequence[ResourceRef], limit: int) -> list[ResourceRef]:
    """Return at most ``limit`` refs: ImagingStudies (latest first), then latest Observations."""
    unique = list(dict.fromkeys(ResourceRef(r.resource_type, r.id) for r in refs))
    studies = [r for r in reversed(unique) if r.resource_type == "ImagingStudy"]
    observations = [r for r in reversed(unique) if r.resource_type == "Observation"]
    return (studies + observations)[:limit]


def _outcome_concept(task: str, outcome: str) -> dict[str, Any]:
    if task == "mortality":
        code, display = codes.DEAD
        coding = {"system": codes.SNOMED, "code": code, "display": display}
        return {"coding": [coding], "text": codes.DEATH_TEXT}
    if task == "los":
        display = codes.LOS_DISPLAY[outcome]
        coding = {"system": codes.LOS_SYSTEM, "code": outcome, "display": display}
        return {"coding": [coding], "text": display}
    finding, change = outcome.split(":")
    change_code, change_display = codes.CHANGE_CODE[change]
    display = f"{codes.FINDING_DISPLAY[finding]}: {change_display.lower()}"
    coding = {"system": codes.PROGRESSION_SYSTEM, "code": f"{finding}-{change_code}"}
    return {"coding": [{**coding, "display": display}], "text": display}


def _progression_extensions(outcome: str) -> list[dict[str, Any]]:
    finding, change = outcome.split(":")
    change_code, change_display = codes.CHANGE_CODE[change]
    finding_coding = {
        "system": codes.FINDING_SYSTEM,
        "code": finding,
        "display": codes.FINDING_DISPLAY[finding],
    }
    change_coding = {"system": codes.CHANGE_SYSTEM, "code": change_code, "display": change_display}
    return [
        {"url": codes.FINDING_EXTENSION, "valueCoding": finding_coding},
        {"url": codes.CHANGE_EXTENSION, "valueCoding": change_coding},
    ]


def _probability(value: float, scale: str) -> float:
    return round(value * 100.0, 4) if scale == "percent" else round(value, 6)


def _prediction(
    score: Score, options: AssessmentOptions, when: Mapping[str, str] | None
) -> dict[str, Any]:
    level = _classify(score.probability, options.thresholds)
    prediction: dict[str, Any] = {
        "outcome": _outcome_concept(score.task, score.outcome),
        "probabilityDecimal": _probability(score.probability, options.probability_scale),
        "qualitativeRisk": {
            "coding": [
                {"system": RISK_PROBABILITY_SYSTEM, "code": level, "display": RISK_DISPLAY[level]}
            ]
        },
    }
    if when:
        prediction["whenPeriod"] = dict(when)
    if score.task == "progression":
        prediction["extension"] = _progression_extensions(score.outcome)
    return prediction


def _when(task: str, as_of: datetime, stay_start: datetime | None) -> dict[str, str] | None:
    if task == "mortality":
        return {"start": codes.utc_instant(as_of)}
    if task == "los":
        return {"start": codes.utc_instant(stay_start or as_of)}
    return None


def _check_group(scores: Sequence[Score]) -> Score:
    if not scores:
        raise ValueError("no scores to assess")
    first = scores[0]
    key = (first.patient_id, first.task, first.model_version, first.as_of, first.encounter_id)
    for s in scores:
        if (s.patient_id, s.task, s.model_version, s.as_of, s.encounter_id) != key:
            raise ValueError("scores of one RiskAssessment must share patient, task, model, as-of")
    outcomes = [s.outcome for s in scores]
    if len(set(outcomes)) != len(outcomes):
        raise ValueError("an outcome appears twice in one RiskAssessment")
    return first


def regions_notes(scores: Sequence[Score]) -> list[str]:
    """Notes on the regions missing on the radiographs used and the radiographs left out by
    region quality control (issue 11)."""
    missing = sorted({r for s in scores for r in s.missing_regions}, key=REGIONS.index)
    not_used = max((s.images_not_used for s in scores), default=0)
    left_out = list(dict.fromkeys(f for s in scores for f in s.films_left_out))
    from_thorax = list(dict.fromkeys(f for s in scores for f in s.films_from_thorax))
    notes = []
    if missing:
        notes.append(f"{REGIONS_MISSING_NOTE}: {', '.join(missing)}")
    if not_used:
        notes.append(f"{not_used} radiograph(s) not used: {FILMS_NOT_USED_NOTE}")
    if left_out:
        notes.append(f"{FILMS_LEFT_OUT_NOTE}: {_named(left_out)}")
    if from_thorax:
        notes.append(f"{FROM_THORAX_NOTE}: {_named(from_thorax)}")
    return notes


def _named(films: Sequence[str]) -> str:
    """At most ``MAX_FILMS_NAMED`` films, then how many more."""
    more = len(films) - MAX_FILMS_NAMED
    return "; ".join(films[:MAX_FILMS_NAMED]) + (f"; and {more} more" if more > 0 else "")


def _notes(
    scores: Sequence[Score], shown: int, total: int, model: ModelInfo | None
) -> list[dict[str, str]]:
    notes: list[dict[str, str]] = []
    if model is not None:
        use = model_use(transparency.card_fields(model), f"{model.name} {model.version}")
        if use.cautions:
            notes.append({"text": use.statement()})
    if any(s.path == "ehr_only" for s in scores):
        notes.append({"text": EHR_ONLY_NOTE})
    notes += [{"text": text} for text in regions_notes(scores)]
    if shown < total:
        notes.append({"text": f"basis lists {shown} of {total} resources used"})
    return notes


def to_risk_assessment(
    scores: Sequence[Score],
    options: AssessmentOptions | None = None,
    *,
    stay_start: datetime | None = None,
    model: ModelInfo | None = None,
) -> dict[str, Any]:
    """Build the RiskAssessment of one patient, task, model version and as-of time.

    Args:
        scores: The scores of one patient and task (one per outcome); outcomes are written
            in the task's canonical order (``outcomes_for``).
        options: Probability scale, risk thresholds, basis bound.
        stay_start: Start of the encounter, for the length-of-stay ``whenPeriod``.
        model: The model that scored, with its card: the card's cautions become the first
            ``note`` (none when not given).

    Raises:
        ValueError: The scores do not belong to one RiskAssessment.
    """
    opts = options or AssessmentOptions()
    first = _check_group(scores)
    order = {o: i for i, o in enumerate(outcomes_for(first.task))}
    ordered = sorted(scores, key=lambda s: order[s.outcome])
    used = [ref for s in scores for ref in s.basis]
    basis = select_basis(used, opts.max_basis)
    total = len({(r.resource_type, r.id) for r in used if r.resource_type in _BASIS_TYPES})
    when = _when(first.task, first.as_of, stay_start)
    label = f"{first.model_name} {first.model_version}"
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": codes.assessment_id(first.model_version, first.task, first.patient_id, first.as_of),
        "meta": {"security": [dict(AI_LABEL)]},
        "identifier": [
            {
                "system": codes.ASSESSMENT_ID_SYSTEM,
                "value": codes.assessment_key(
                    first.model_version, first.task, first.patient_id, first.as_of
                ),
            }
        ],
        "status": "final",
        "method": {
            "coding": [{"system": codes.MODEL_SYSTEM, "code": first.model_name, "display": label}],
            "text": label,
        },
        "code": {
            "coding": [
                {
                    "system": codes.TASK_SYSTEM,
                    "code": first.task,
                    "display": codes.TASK_DISPLAY[first.task],
                }
            ]
        },
        "subject": {"reference": f"Patient/{first.patient_id}"},
        "occurrenceDateTime": codes.utc_instant(first.as_of),
        "performer": {
            "reference": f"Device/{codes.device_id(first.model_name, first.model_version)}"
        },
        "prediction": [_prediction(s, opts, when) for s in ordered],
    }
    if first.encounter_id is not None:
        resource["encounter"] = {"reference": f"Encounter/{first.encounter_id}"}
    if basis:
        resource["basis"] = [opts.source_reference(r) for r in basis]
    notes = _notes(scores, len(basis), total, model)
    if notes:
        resource["note"] = notes
    resource["text"] = narrative(resource, opts.probability_scale)
    return resource


_BASIS_TYPES = frozenset({"ImagingStudy", "Observation"})


def check_risk_assessment(resource: Mapping[str, Any], scale: str = "percent") -> None:
    """Validate a RiskAssessment structurally (R4B) and check its narrative, ras-1 and ras-2.

    fhir.resources checks no invariants and no narrative, so these are checked here, before
    any write:

    * the ``text``, when present: txt-1 and txt-2 (:func:`.narrative.check_narrative`);
    * ras-1 (``prediction.probabilityRange``): low and high, when present, are percentages
      (UCUM ``%``), whatever the scale of ``probabilityDecimal``.
    * ras-2 (``prediction.probabilityDecimal``): ``<= 100``; and within ``[0, 100]`` for the
      ``percent`` scale, ``[0, 1]`` for ``fraction``.

    Raises:
        InvalidResource: The resource is not a valid R4 RiskAssessment, or it breaks txt-1,
            txt-2, ras-1 or ras-2 (or the configured scale).
    """
    validate_resource(resource)
    if "text" in resource:
        check_narrative(resource["text"])
    top = 100.0 if scale == "percent" else 1.0
    for index, prediction in enumerate(resource.get("prediction") or []):
        where = f"RiskAssessment.prediction[{index}]"
        value = prediction.get("probabilityDecimal")
        if value is not None and float(value) > 100.0:
            raise InvalidResource(f"{where}.probabilityDecimal above 100 (ras-2)")
        if value is not None and not 0.0 <= float(value) <= top:
            raise InvalidResource(f"{where}.probabilityDecimal out of range (ras-2, scale {scale})")
        bounds = prediction.get("probabilityRange") or {}
        for end in ("low", "high"):
            quantity = bounds.get(end)
            if quantity is not None and (
                quantity.get("code") != "%" or quantity.get("system") != UCUM
            ):
                raise InvalidResource(f"{where}.probabilityRange.{end} is not a percentage (ras-1)")


def to_provenance(
    run_id: str,
    targets: Sequence[str],
    device_reference: str,
    sources: Sequence[ResourceRef],
    recorded: datetime,
    options: AssessmentOptions | None = None,
) -> dict[str, Any]:
    """Build the ``Provenance`` tying a chunk's RiskAssessments to the run and the model.

    AI Transparency on FHIR (``AI-Provenance``): ``reason`` AIAST, the Device as the agent
    with the AI role, the model card as an entity (role ``derivation``). The other entities
    (role ``source``) list at most ``options.max_basis`` inputs, chosen as for basis and
    referenced in the same form.
    """
    opts = options or AssessmentOptions()
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": codes.provenance_id(run_id, list(targets)),
        "meta": {"profile": [transparency.PROVENANCE_PROFILE]},
        "target": [{"reference": t} for t in targets],
        "recorded": codes.utc_instant(recorded),
        "reason": [{"coding": [dict(transparency.AI_REASON)]}],
        "activity": {"text": f"dipro-fhir scoring run {run_id}"},
        "agent": [transparency.ai_agent(device_reference)],
        "entity": [transparency.model_card_entity(device_reference)],
    }
    chosen = select_basis(sources, opts.max_basis)
    provenance["entity"] += [{"role": "source", "what": opts.source_reference(r)} for r in chosen]
    return provenance
