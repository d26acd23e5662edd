"""The human-readable ``text`` of a RiskAssessment, generated from the resource's own elements.

FHIR R4 ``DomainResource.text`` (Narrative): ``status`` ``generated`` says the XHTML is
"entirely generated from the structured data in the resource", so :func:`narrative` reads
nothing but the RiskAssessment it is given and can never show more patient data than the
resource already holds (it shows less: no subject, encounter or source ids). It says, in
this order:

* the model card's cautions (a ``note`` of :mod:`dipro_fhir.core.model_use`, e.g. "NOT FOR
  CLINICAL USE"), bold, first;
* what was assessed (``code``), by which model (``method``), as of when
  (``occurrenceDateTime``, in UTC as stored), and that an AI asserted it (``meta.security``
  AIAST);
* one table row per ``prediction``: the outcome, the probability in percent whatever the
  wire scale, and the qualitative band (``qualitativeRisk``);
* what the score rests on: the Observations and imaging studies (chest radiographs) that
  ``basis`` lists, counted by type;
* the other notes: the EHR-only path, regions missing on the films used, films left out,
  a shortened basis.

The XHTML keeps to FHIR's narrative rules (txt-1, txt-2: ``div`` in the XHTML namespace, basic
formatting elements only, no attributes but ``xmlns``, non-empty) and has no whitespace between
elements, so a server's re-serialisation gives back the same string (HAPI FHIR does) and a
re-run of the night still finds identical content.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any, Final

from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.core.model_use import (
    CARD_MISSING,
    NOT_FOR_CLINICAL_USE,
    NOT_VALIDATED,
    USE_UNSTATED,
)

XHTML_NS: Final[str] = "http://www.w3.org/1999/xhtml"
CAUTIONS: Final[tuple[str, ...]] = (CARD_MISSING, NOT_FOR_CLINICAL_USE, USE_UNSTATED, NOT_VALIDATED)
RETRACTED_MARK: Final[str] = "ENTERED IN ERROR"


def _e(text: object) -> str:
    return html.escape(str(text), quote=False)


def _display(concept: Mapping[str, Any] | None) -> str:
    concept = concept or {}
    codings = concept.get("coding") or [{}]
    return str(concept.get("text") or codings[0].get("display") or codings[0].get("code") or "?")


def _when(instant: str | None) -> str:
    """``2026-11-24T02:00:00Z`` as ``2026-11-24 02:00 UTC`` (the stored time, no conversion)."""
    if not instant:
        return "an unstated time"
    if instant.endswith("Z") and len(instant) >= 16:
        return f"{instant[:10]} {instant[11:16]} UTC"
    return instant


def _percent(value: float, scale: str) -> str:
    percent = value if scale == "percent" else value * 100.0
    return f"{percent:.1f} %"


def _basis_counts(basis: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"Observation": 0, "ImagingStudy": 0}
    for ref in basis:
        kind = ref.get("type") or str(ref.get("reference") or "").split("/", 1)[0]
        if kind in counts:
            counts[kind] += 1
    return counts


def _rests_on(basis: Sequence[Mapping[str, Any]]) -> str:
    counts = _basis_counts(basis)
    if not any(counts.values()):
        return "The resource lists no Observations or imaging studies as its basis."
    obs, studies = counts["Observation"], counts["ImagingStudy"]
    return (
        f"Rests on {obs} Observation{'s' * (obs != 1)} and {studies} imaging "
        f"stud{'ies' if studies != 1 else 'y'} (chest radiographs), listed in basis."
    )


def _table(predictions: Sequence[Mapping[str, Any]], scale: str) -> str:
    rows = ["<tr><th>Outcome</th><th>Probability</th><th>Band</th></tr>"]
    for p in predictions:
        value = p.get("probabilityDecimal")
        shown = _percent(float(value), scale) if value is not None else "not stated"
        band = _display(p.get("qualitativeRisk")) if p.get("qualitativeRisk") else "not stated"
        rows.append(
            f"<tr><td>{_e(_display(p.get('outcome')))}</td><td>{_e(shown)}</td>"
            f"<td>{_e(band)}</td></tr>"
        )
    return f"<table>{''.join(rows)}</table>"


def _ai_asserted(resource: Mapping[str, Any]) -> bool:
    labels = (resource.get("meta") or {}).get("security") or []
    return any(label.get("code") == "AIAST" for label in labels)


def _caution(note: str) -> str:
    """The cautions bold, the model card's words after them plain."""
    head, _, rest = note.partition(". ")
    return f"<p><b>{_e(head)}.</b> {_e(rest)}</p>" if rest else f"<p><b>{_e(note)}</b></p>"


def narrative(resource: Mapping[str, Any], scale: str = "percent") -> dict[str, str]:
    """The ``text`` of a RiskAssessment: ``status`` ``generated`` and an XHTML ``div``.

    Args:
        resource: The RiskAssessment (raw JSON), complete but for ``text``.
        scale: The scale of ``probabilityDecimal`` (``percent`` or ``fraction``); the
            narrative always shows percent.
    """
    notes = [str(n.get("text") or "") for n in resource.get("note") or []]
    cautions = [n for n in notes if n.startswith(CAUTIONS)]
    others = [n for n in notes if n and n not in cautions]
    parts = [_caution(c) for c in cautions]
    if resource.get("status") not in (None, "final"):
        parts.append(f"<p><b>Status: {_e(resource['status'])}</b></p>")
    by = _display(resource.get("method"))
    asserted = ", asserted by an AI model" if _ai_asserted(resource) else ""
    parts.append(
        f"<p><b>{_e(_display(resource.get('code')))}</b>: risk assessment by {_e(by)}"
        f"{asserted}, as of {_e(_when(resource.get('occurrenceDateTime')))}.</p>"
    )
    parts.append(_table(resource.get("prediction") or [], scale))
    parts.append(f"<p>{_e(_rests_on(resource.get('basis') or []))}</p>")
    if others:
        items = "".join(f"<li>{_e(n.replace('_', ' '))}</li>" for n in others)
        parts.append(f"<ul>{items}</ul>")
    return {"status": "generated", "div": f'<div xmlns="{XHTML_NS}">{"".join(parts)}</div>'}


def mark_retracted(text: Mapping[str, str] | None, note: str) -> dict[str, str]:
    """The narrative of a retracted RiskAssessment: the retraction first, then the rest.

    A RiskAssessment written before narratives existed gets one that says only that.
    """
    head = f"<p><b>{RETRACTED_MARK}</b>: {_e(note)}</p>"
    opening = f'<div xmlns="{XHTML_NS}">'
    div = (text or {}).get("div") or f"{opening}</div>"
    if not div.startswith(opening):
        return {"status": "generated", "div": f"{opening}{head}</div>"}
    return {"status": "generated", "div": opening + head + div[len(opening) :]}


#: The XHTML elements and attributes FHIR R4 narratives may hold (Narrative invariant txt-1:
#: HTML 4.0 chapters 7-11 and 15, ``a``, ``img``; no scripts, forms, frames or event
#: handlers), as the HL7 validator lists them.
NARRATIVE_ELEMENTS: Final[frozenset[str]] = frozenset(
    (
        "a",
        "abbr",
        "acronym",
        "b",
        "big",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "ul",
        "var",
    )
)
NARRATIVE_ATTRIBUTES: Final[frozenset[str]] = frozenset(
    (
        "abbr",
        "accesskey",
        "align",
        "alt",
        "axis",
        "bgcolor",
        "border",
        "cellhalign",
        "cellpadding",
        "cellspacing",
        "cellvalign",
        "char",
        "charoff",
        "charset",
        "cite",
        "class",
        "colspan",
        "compact",
        "coords",
        "dir",
        "frame",
        "headers",
        "height",
        "href",
        "hreflang",
        "hspace",
        "id",
        "lang",
        "longdesc",
        "name",
        "nowrap",
        "rel",
        "rev",
        "rowspan",
        "rules",
        "scope",
        "shape",
        "span",
        "src",
        "start",
        "style",
        "summary",
        "tabindex",
        "title",
        "type",
        "valign",
        "value",
        "vspace",
        "width",
    )
)


def check_narrative(text: Mapping[str, Any]) -> None:
    """Check a ``Narrative`` against FHIR R4's rules, which fhir.resources does not check.

    ``status`` is a Narrative status; ``div`` is well-formed XML, a ``div`` in the XHTML
    namespace (R4 Narrative.div), holds only basic formatting elements and attributes
    (txt-1) and some non-whitespace content (txt-2).

    Raises:
        InvalidResource: Naming the rule broken (never the text).
    """
    if text.get("status") not in ("generated", "extensions", "additional", "empty"):
        raise InvalidResource("Narrative.status is not a narrative status")
    try:
        root = ET.fromstring(str(text.get("div") or ""))
    except ET.ParseError as exc:
        raise InvalidResource("Narrative.div is not well-formed XML") from exc
    if root.tag != f"{{{XHTML_NS}}}div":
        raise InvalidResource("Narrative.div is not a div in the XHTML namespace")
    for element in root.iter():
        namespace, _, name = element.tag.rpartition("}")
        if namespace != f"{{{XHTML_NS}" or name not in NARRATIVE_ELEMENTS:
            raise InvalidResource(f"Narrative.div holds a <{name}> element (txt-1)")
        if set(element.attrib) - NARRATIVE_ATTRIBUTES:
            raise InvalidResource(f"Narrative.div: an attribute of <{name}> is not allowed (txt-1)")
    if not "".join(root.itertext()).strip():
        raise InvalidResource("Narrative.div has no text (txt-2)")
