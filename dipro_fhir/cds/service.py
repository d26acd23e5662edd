"""The CDS Hooks 2.0 service as a FastAPI app: discovery and the ``patient-view`` service.

* ``GET {base}/cds-services``: discovery, one service ``dipro-risk`` on ``patient-view``
  with the prefetch template ``patient: Patient/{{context.patientId}}``.
* ``POST {base}/cds-services/dipro-risk``: one card per task with the patient's latest
  live, unretracted, recent scores (:mod:`.cards`, :mod:`dipro_fhir.store.latest`); an empty
  ``cards`` array for a patient without one (CDS Hooks "no decision support": most patients
  an EHR opens were never in the scored cohort, and a card saying so on every record would be
  noise). No score is ever computed or estimated here.

The prefetched ``Patient``, when the EHR sends it, must be the patient in ``context``: a
``Patient`` of another id is a 400, never cards for the wrong patient (the EHR filled the
template from the wrong context). When ``context.encounterId`` names another encounter than
the one a score was made for, that score is about an earlier stay and gets no card.

Errors are 4xx (a malformed call: 400 or 422, an untrusted caller: 401) or 503 (the results
database is down). Logs carry the hook instance, card counts and timings, never a patient id.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from dipro_fhir.cds.auth import ClientRejected, ClientVerifier
from dipro_fhir.cds.cards import CardLinks, patient_cards
from dipro_fhir.core.model_use import ModelUse
from dipro_fhir.core.settings import CdsSettings
from dipro_fhir.core.timeline import PatientId
from dipro_fhir.store.latest import latest_scores

_LOG = logging.getLogger(__name__)
HOOK: Final[str] = "patient-view"
SERVICE_ID: Final[str] = "dipro-risk"
FHIR_ID: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9\-.]{1,64}")
DISCOVERY: Final[dict[str, Any]] = {
    "services": [
        {
            "hook": HOOK,
            "id": SERVICE_ID,
            "title": "DiPro risk scores",
            "description": (
                "The patient's latest DiPro scores (in-hospital mortality, chest X-ray "
                "progression, length of stay) from the nightly run, one card per task, with "
                "the score's time, band, model and its validation status."
            ),
            "prefetch": {"patient": "Patient/{{context.patientId}}"},
            "usageRequirements": (
                "Scores exist only for patients in the site's DiPro cohort; others get no "
                "card. Scores are as of the last nightly run."
            ),
        }
    ]
}


class PatientViewContext(BaseModel):
    """``context`` of ``patient-view`` (hook version 1.0)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    user_id: str = Field(alias="userId")
    patient_id: str = Field(alias="patientId")
    encounter_id: str | None = Field(default=None, alias="encounterId")


class HookRequest(BaseModel):
    """A CDS Hooks call (CDS Hooks 2.0 "Calling a CDS Service"); unknown fields are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    hook: str
    hook_instance: str = Field(alias="hookInstance")
    fhir_server: str | None = Field(default=None, alias="fhirServer")
    context: PatientViewContext
    prefetch: dict[str, Any] | None = None


def _check_prefetch(call: HookRequest) -> None:
    patient = (call.prefetch or {}).get("patient")
    if patient is None:
        return  # not prefetched: the context's id is all the service needs
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise HTTPException(400, "prefetch.patient is not a Patient resource")
    if patient.get("id") != call.context.patient_id:
        raise HTTPException(400, "prefetch.patient is not the patient of context.patientId")


def create_app(
    engine: Engine,
    settings: CdsSettings,
    use_of: Callable[[str, str], ModelUse],
    *,
    timezone: tzinfo = UTC,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """The service's app.

    Args:
        engine: The results database.
        settings: ``DIPRO_CDS__*``.
        use_of: The model use of a model name and version
            (:class:`~dipro_fhir.cds.model_status.DeployedModelUse`).
        timezone: The site's time zone, for the times shown on cards.
        clock: The current time (UTC).
    """
    app = FastAPI(title="dipro-fhir CDS Hooks", docs_url=None, redoc_url=None, openapi_url=None)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    verifier = ClientVerifier(settings.trusted_clients) if settings.trusted_clients else None

    def authenticate(request: Request, authorization: str | None) -> None:
        if verifier is None:
            return
        base = (settings.public_base or str(request.base_url)).rstrip("/")
        try:
            verifier.verify(authorization, f"{base}{request.url.path}")
        except ClientRejected as exc:
            raise HTTPException(401, str(exc), {"WWW-Authenticate": "Bearer"}) from exc

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> JSONResponse:
        _LOG.error("CDS Hooks: the results database is unavailable (%s)", type(exc).__name__)
        return JSONResponse({"detail": "the results database is unavailable"}, status_code=503)

    @app.get("/cds-services")
    def discovery(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        authenticate(request, authorization)
        return DISCOVERY

    @app.post(f"/cds-services/{SERVICE_ID}")
    def patient_view(
        call: HookRequest, request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        authenticate(request, authorization)
        if call.hook != HOOK:
            raise HTTPException(400, f"this service answers the {HOOK} hook only")
        patient = call.context.patient_id
        if not FHIR_ID.fullmatch(patient):
            raise HTTPException(400, "context.patientId is not a FHIR id")
        _check_prefetch(call)
        now = clock()
        since = now - timedelta(hours=settings.max_age_hours)
        latest = latest_scores(engine, PatientId(patient), since=since)
        encounter = call.context.encounter_id
        latest = {
            task: scored
            for task, scored in latest.items()
            if not (encounter and scored.first.encounter_id not in (None, encounter))
        }
        view = settings.patient_view_url.format(
            ui_base=settings.ui_base.rstrip("/"), patient_id=quote(patient, safe="")
        )
        links = CardLinks(view, settings.smart_launch_url)
        cards = patient_cards(latest, use_of, links, now, timezone)
        _LOG.info(
            "CDS Hooks %s %s: %d cards in %.0f ms",
            HOOK,
            re.sub(r"[^A-Za-z0-9\-]", "?", call.hook_instance[:64]),
            len(cards),
            (time.perf_counter() - started) * 1000,
        )
        return {"cards": cards}

    return app
