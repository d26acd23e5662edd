"""Read what extraction needs from an ImagingStudy: DICOM UIDs, times, endpoints.

FHIR R4 keeps the Study Instance UID in ``ImagingStudy.identifier`` with system
``urn:dicom:uid`` and value ``urn:oid:<uid>`` (R4 §ImagingStudy "notes": the R3 element
``uid`` is gone). Writers differ on the system: Synthea and others use
``urn:ietf:rfc:3986`` (a URI value, RFC 3986) with the same ``urn:oid:<uid>`` value, so
that system counts too when its value is an OID URN. Either way the ``urn:oid:`` prefix is
stripped and the rest must be a DICOM UID (PS3.5 9.1: digits and dots, at most 64
characters). Series UIDs are in ``series.uid`` and SOP Instance UIDs in
``series.instance.uid``. Endpoints (``ImagingStudy.endpoint`` and ``series.endpoint``) name
where the images can be fetched (``Endpoint.address``, connection type ``dicom-wado-rs``).
Pure: raw JSON in, frozen dataclasses out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from dipro_fhir.core.timeline import ResourceRef
from dipro_fhir.mapping.times import parse_fhir_time

DICOM_UID_SYSTEM: Final[str] = "urn:dicom:uid"
URI_SYSTEM: Final[str] = "urn:ietf:rfc:3986"
OID_PREFIX: Final[str] = "urn:oid:"
#: A DICOM UID (PS3.5 9.1): numeric components separated by dots, <= 64 characters.
_UID: Final = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
WADO_RS: Final[str] = "dicom-wado-rs"
RADIOGRAPH_MODALITIES: Final[frozenset[str]] = frozenset({"CR", "DX"})
#: SNOMED CT body structures of the chest (thorax, its entire structure, chest wall, lung).
CHEST_SITES: Final[frozenset[str]] = frozenset(
    {"51185008", "43799004", "302551006", "78904004", "39607008", "181216001", "416775004"}
)
_CHEST_WORDS: Final = re.compile(r"\b(chest|thora\w*|lungs?|pulmonary)\b")


def _is_chest(site: str) -> bool:
    return site in CHEST_SITES or _CHEST_WORDS.search(site) is not None


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """One series of a study as the ImagingStudy describes it."""

    uid: str
    modality: str | None
    instance_uids: tuple[str, ...]
    endpoints: tuple[str, ...]
    body_sites: tuple[str, ...] = ()  # codes and texts of ``series.bodySite``, lower case


@dataclass(frozen=True, slots=True)
class StudyRef:
    """The parts of an ImagingStudy extraction uses.

    Attributes:
        resource: The ImagingStudy itself (with its version, for provenance).
        study_uid: The DICOM Study Instance UID, or None when the study names none.
        started: ``ImagingStudy.started`` (timezone-aware), or None.
        encounter_id: The Encounter the study belongs to, if referenced.
        series: The series it lists (may be empty: a study need not list them).
        endpoints: Endpoint references (``Endpoint/id``) of the study and its series.
    """

    resource: ResourceRef
    study_uid: str | None
    started: datetime | None
    encounter_id: str | None
    series: tuple[SeriesRef, ...]
    endpoints: tuple[str, ...]

    def declared_not_chest_radiograph(self) -> bool:
        """Whether the study says it is no chest radiograph: every listed series names a
        modality and none is CR or DX, or some series name a body site and none of those
        is the chest (an arm or an ankle film). A study that says nothing is fetched."""
        if not self.series:
            return False
        modalities = [s.modality for s in self.series]
        if all(modalities) and not any(m in RADIOGRAPH_MODALITIES for m in modalities):
            return True
        sites = [site for s in self.series for site in s.body_sites]
        return bool(sites) and not any(_is_chest(site) for site in sites)


def _refs(items: object) -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(
        str(x["reference"])
        for x in items
        if isinstance(x, dict) and isinstance(x.get("reference"), str)
    )


def _uid_of(identifier: object) -> str | None:
    if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
        return None
    system, value = identifier.get("system"), identifier["value"].strip()
    if system == URI_SYSTEM and not value.startswith(OID_PREFIX):
        return None  # some other URI (a URL, a urn:uuid), not a DICOM UID
    if system not in (DICOM_UID_SYSTEM, URI_SYSTEM):
        return None
    uid = value.removeprefix(OID_PREFIX)
    return uid if len(uid) <= 64 and _UID.fullmatch(uid) else None


def study_uid(study: Mapping[str, Any]) -> str | None:
    """The Study Instance UID from ``ImagingStudy.identifier``: system ``urn:dicom:uid``
    first, then ``urn:ietf:rfc:3986`` with an ``urn:oid:`` value; ``None`` when neither
    holds a valid DICOM UID."""
    identifiers = study.get("identifier") or []
    for system in (DICOM_UID_SYSTEM, URI_SYSTEM):
        for ident in identifiers:
            uid = (
                _uid_of(ident)
                if isinstance(ident, dict) and ident.get("system") == system
                else None
            )
            if uid is not None:
                return uid
    return None


def _series(item: Mapping[str, Any]) -> SeriesRef | None:
    uid = item.get("uid")
    if not isinstance(uid, str) or not uid:
        return None
    modality = item.get("modality")
    code = modality.get("code") if isinstance(modality, dict) else None
    instances = tuple(
        str(i["uid"]) for i in item.get("instance") or [] if isinstance(i, dict) and i.get("uid")
    )
    return SeriesRef(
        uid,
        code if isinstance(code, str) else None,
        instances,
        _refs(item.get("endpoint")),
        _body_sites(item.get("bodySite")),
    )


def _body_sites(site: object) -> tuple[str, ...]:
    """Codes and displays of an R4 ``series.bodySite`` (a Coding), lower case."""
    if not isinstance(site, dict):
        return ()
    found = [site.get("code"), site.get("display")]
    return tuple(str(v).strip().lower() for v in found if isinstance(v, str) and v.strip())


def read_imaging_study(study: Mapping[str, Any]) -> StudyRef:
    """Read an ImagingStudy's UIDs, start time, encounter and endpoints."""
    meta = study.get("meta") if isinstance(study.get("meta"), dict) else {}
    version = meta.get("versionId") if isinstance(meta, dict) else None
    started = parse_fhir_time(study.get("started"))
    encounter = study.get("encounter")
    enc_ref = encounter.get("reference") if isinstance(encounter, dict) else None
    series = tuple(
        s for s in (_series(x) for x in study.get("series") or [] if isinstance(x, dict)) if s
    )
    endpoints = dict.fromkeys(
        _refs(study.get("endpoint")) + tuple(e for s in series for e in s.endpoints)
    )
    return StudyRef(
        resource=ResourceRef("ImagingStudy", str(study.get("id")), version),
        study_uid=study_uid(study),
        started=None if started is None else started.value,
        encounter_id=(
            enc_ref.removeprefix("Encounter/")
            if isinstance(enc_ref, str) and enc_ref.startswith("Encounter/")
            else None
        ),
        series=series,
        endpoints=tuple(endpoints),
    )


def wado_rs_address(endpoint: Mapping[str, Any]) -> str | None:
    """``Endpoint.address`` when the Endpoint is an active DICOM WADO-RS endpoint."""
    kind = endpoint.get("connectionType")
    code = kind.get("code") if isinstance(kind, dict) else None
    address = endpoint.get("address")
    if code != WADO_RS or endpoint.get("status") not in (None, "active"):
        return None
    return address if isinstance(address, str) and address else None
