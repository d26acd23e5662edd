"""The model as HL7 AI Transparency on FHIR resources: ``Device``, model card, Provenance agent.

Follows *AI Transparency on FHIR* 1.0.0-ballot (STU1 ballot, HL7 International / EHR WG,
``http://hl7.org/fhir/uv/aitransparency``; profiles ``AI-Device``, ``AI-ModelCard`` and
``AI-Provenance``, FSH sources in ``HL7/aitransparency-ig``):

* The model's ``Device`` (profile ``AI-Device``) has ``type``
  ``AIdeviceTypeCS#Artificial-Intelligence``, the IG's ``aitransparency.AIKind`` extension
  (``Deep-Learning-Models``), the version, the weights' SHA-256 as an identifier, and the
  ``aitransparency.modelCardDescription`` extension referencing the card.
* The model card is a ``DocumentReference`` (profile ``AI-ModelCard``): ``type``
  ``AIinputsCS#AIModelCard``, ``category`` ``AIinputsCS#AIModelCardMarkdownFormat``, the
  card as ``text/markdown`` and as ``application/json`` (the checkpoint's
  ``model_card.json``), and the HTI-1 source attributes (:mod:`.hti1`) as a second JSON
  attachment.
* The card's cautions (:mod:`dipro_fhir.core.model_use`: not for clinical use, not validated,
  intended use not stated) are the Device's ``safety`` (must-support in ``AI-Device``), coded
  in the project's ``model-use`` CodeSystem with the card's own words as text.
* Provenance (profile ``AI-Provenance``): ``reason`` ``v3-ObservationValue#AIAST``, an agent
  with ``role`` ``AIdeviceTypeCS#Artificial-Intelligence`` whose ``who`` is the Device, and
  the model card as an entity with role ``derivation``.

Everything is deterministic (no creation times), so a re-run writes nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Final

from dipro_fhir.core.model_use import (
    CARD_MISSING,
    NOT_FOR_CLINICAL_USE,
    NOT_VALIDATED,
    USE_UNSTATED,
    model_use,
)
from dipro_fhir.core.scores import ModelInfo
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.hti1 import source_attributes

IG_VERSION: Final[str] = "1.0.0-ballot"
IG_BASE: Final[str] = "http://hl7.org/fhir/uv/aitransparency"
DEVICE_PROFILE: Final[str] = f"{IG_BASE}/StructureDefinition/AI-Device"
MODEL_CARD_PROFILE: Final[str] = f"{IG_BASE}/StructureDefinition/AI-ModelCard"
PROVENANCE_PROFILE: Final[str] = f"{IG_BASE}/StructureDefinition/AI-Provenance"
MODEL_CARD_EXTENSION: Final[str] = (
    f"{IG_BASE}/StructureDefinition/aitransparency.modelCardDescription"
)
AI_KIND_EXTENSION: Final[str] = f"{IG_BASE}/StructureDefinition/aitransparency.AIKind"
DEVICE_TYPE_SYSTEM: Final[str] = f"{IG_BASE}/CodeSystem/AIdeviceTypeCS"
INPUTS_SYSTEM: Final[str] = f"{IG_BASE}/CodeSystem/AIinputsCS"
AI_DEVICE_TYPE: Final[dict[str, str]] = {
    "system": DEVICE_TYPE_SYSTEM,
    "code": "Artificial-Intelligence",
    "display": "All kinds of Artificial Intelligence",
}
AI_KIND: Final[dict[str, str]] = {
    "system": DEVICE_TYPE_SYSTEM,
    "code": "Deep-Learning-Models",
    "display": "Deep Learning Models",
}
AI_REASON: Final[dict[str, str]] = {
    "system": codes.AI_LABEL_SYSTEM,
    "code": codes.AI_LABEL_CODE,
    "display": codes.AI_LABEL_DISPLAY,
}
WEIGHTS_SYSTEM: Final[str] = f"{codes.PROJECT_BASE}/sid/model-weights-sha256"
CARD_DOC_SYSTEM: Final[str] = f"{codes.PROJECT_BASE}/sid/model-card"
HTI1_TITLE: Final[str] = "HTI-1 source attributes (45 CFR 170.315(b)(11)(iv)(B))"
MODEL_USE_SYSTEM: Final[str] = f"{codes.PROJECT_BASE}/CodeSystem/model-use"
#: The caution -> (code, display) in :data:`MODEL_USE_SYSTEM`.
MODEL_USE_CODES: Final[dict[str, tuple[str, str]]] = {
    NOT_FOR_CLINICAL_USE: ("not-for-clinical-use", "Not for clinical use"),
    USE_UNSTATED: ("intended-use-not-stated", "Intended use not stated"),
    NOT_VALIDATED: ("not-validated", "Not validated"),
    CARD_MISSING: ("model-card-missing", "Model card not at hand"),
}


def model_card_id(model: ModelInfo) -> str:
    """Return the logical id of the model card ``DocumentReference`` of a model version."""
    return card_id_for_device(codes.device_id(model.name, model.version))


def card_id_for_device(device_id: str) -> str:
    """Return the model card's id from its Device's id (``model-X`` -> ``card-X``)."""
    return "card-" + device_id.removeprefix("model-")


def device_reference(model: ModelInfo) -> str:
    """Return ``Device/<id>`` of a model version."""
    return f"Device/{codes.device_id(model.name, model.version)}"


def card_fields(model: ModelInfo) -> dict[str, Any]:
    """The model card as JSON: the checkpoint's card, or name, version and digest alone."""
    if model.card_json:
        parsed = json.loads(model.card_json)
        if isinstance(parsed, dict):
            return parsed
    return {"name": model.name, "version": model.version, "weights_sha256": model.card_hash}


def card_markdown(card: dict[str, Any]) -> str:
    """Render the model card as Markdown (the human-readable attachment)."""
    metrics = card.get("metrics") or {}
    lines = [
        f"# Model card: {card.get('name', '?')} {card.get('version', '?')}",
        "",
        f"- Weights SHA-256: `{card.get('weights_sha256', '')}`",
        f"- Tasks: {', '.join(card.get('tasks') or []) or 'not stated'}",
        "",
        "## Intended use",
        "",
        str(card.get("intended_use") or "Not stated in the card."),
        "",
        "## Training data",
        "",
        str(card.get("training_data") or "Not stated in the card."),
        "",
        "## Metrics",
        "",
    ]
    lines += [f"- {name}: {value:.4f}" for name, value in sorted(metrics.items())] or [
        "None recorded in the card."
    ]
    return "\n".join(lines) + "\n"


def _attachment(content_type: str, payload: bytes, title: str) -> dict[str, Any]:
    return {
        "attachment": {
            "contentType": content_type,
            "data": base64.b64encode(payload).decode("ascii"),
            "hash": base64.b64encode(hashlib.sha1(payload).digest()).decode("ascii"),
            "size": len(payload),
            "title": title,
        }
    }


def to_model_card(model: ModelInfo) -> dict[str, Any]:
    """Build the model card ``DocumentReference`` (profile AI-ModelCard)."""
    card = card_fields(model)
    markdown = card_markdown(card).encode()
    as_json = json.dumps(card, indent=2, sort_keys=True).encode()
    attributes = json.dumps(source_attributes(card), indent=2).encode()
    return {
        "resourceType": "DocumentReference",
        "id": model_card_id(model),
        "meta": {"profile": [MODEL_CARD_PROFILE], "security": [dict(AI_REASON)]},
        "identifier": [{"system": CARD_DOC_SYSTEM, "value": f"{model.name}|{model.version}"}],
        "status": "current",
        "type": {
            "coding": [{"system": INPUTS_SYSTEM, "code": "AIModelCard", "display": "AI Model-Card"}]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": INPUTS_SYSTEM,
                        "code": "AIModelCardMarkdownFormat",
                        "display": "Markdown Format",
                    }
                ]
            }
        ],
        "description": f"Model card of {model.name} {model.version}",
        "content": [
            _attachment("text/markdown", markdown, "model card (Markdown)"),
            _attachment("application/json", as_json, "model_card.json"),
            _attachment("application/json", attributes, HTI1_TITLE),
        ],
    }


def to_device(model: ModelInfo) -> dict[str, Any]:
    """Build the ``Device`` (profile AI-Device) of one model version (deterministic id)."""
    return {
        "resourceType": "Device",
        "id": codes.device_id(model.name, model.version),
        "meta": {"profile": [DEVICE_PROFILE], "security": [dict(AI_REASON)]},
        "extension": [
            {"url": AI_KIND_EXTENSION, "valueCodeableConcept": {"coding": [dict(AI_KIND)]}},
            {
                "url": MODEL_CARD_EXTENSION,
                "valueReference": {"reference": f"DocumentReference/{model_card_id(model)}"},
            },
        ],
        "identifier": [
            {"system": codes.MODEL_ID_SYSTEM, "value": f"{model.name}|{model.version}"},
            {"system": WEIGHTS_SYSTEM, "value": model.card_hash},
        ],
        "status": "active",
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "type": {"coding": [dict(AI_DEVICE_TYPE)], "text": "AI/ML prediction model"},
        "version": [{"value": model.version}],
        "note": [{"text": f"weights sha256 {model.card_hash}"}],
        **_safety(model),
    }


def _safety(model: ModelInfo) -> dict[str, Any]:
    """``Device.safety``: one concept per caution of the model card (nothing when none)."""
    use = model_use(card_fields(model), f"{model.name} {model.version}")
    concepts = []
    for caution in use.cautions:
        code, display = MODEL_USE_CODES[caution]
        coding = {"system": MODEL_USE_SYSTEM, "code": code, "display": display}
        concepts.append({"coding": [coding], "text": use.statement()})
    return {"safety": concepts} if concepts else {}


def ai_agent(device_reference: str) -> dict[str, Any]:
    """The Provenance agent of the AI (slice ``AIagent`` of AI-Provenance)."""
    return {
        "type": {"coding": [{"system": codes.PARTICIPANT_SYSTEM, "code": "performer"}]},
        "role": [{"coding": [dict(AI_DEVICE_TYPE)]}],
        "who": {"reference": device_reference},
    }


def model_card_entity(device_reference: str) -> dict[str, Any]:
    """The Provenance entity of the model card (slice ``modelCard``, role derivation)."""
    card = card_id_for_device(device_reference.split("/", 1)[1])
    return {"role": "derivation", "what": {"reference": f"DocumentReference/{card}"}}
