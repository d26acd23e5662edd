"""The retraction run: what ``dipro-fhir retract`` and the ``dipro_retract`` DAG call.

See :mod:`dipro_fhir.writeback.retract` for how RiskAssessments are retracted and
:mod:`dipro_fhir.store.retractions` for the database side.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.core.settings import Settings
from dipro_fhir.run import connections
from dipro_fhir.store.retractions import RetractionRequest, RetractionStore


def refuse_withdrawn(settings: Settings, version: str, as_of: datetime) -> None:
    """Refuse a run of a model version a retraction of every patient covers at ``as_of``.

    Raises:
        ConfigError: The version is withdrawn for that as-of time.
    """
    if RetractionStore(connections.engine(settings)).withdrawn(version, as_of):
        raise ConfigError(
            f"model version {version!r} is retracted for as-of {as_of.isoformat()}: "
            "its results must not be published again (see `dipro-fhir retract`)"
        )


def run_retraction(settings: Settings, request: RetractionRequest) -> dict[str, Any]:
    """Retract a model version's results on the FHIR server and in the results database.

    Returns:
        The retraction id and its counts (found, retracted, already, rows_marked,
        provenances).

    Raises:
        ConfigError: Results are not written to a FHIR server, or no reason is given.
    """
    from dipro_fhir.writeback.retract import retract

    if settings.writeback.target != "fhir":
        raise ConfigError("retraction needs writeback.target=fhir (RiskAssessments on a server)")
    if not request.reason.strip():
        raise ConfigError("a retraction needs a reason")
    fallback = None
    card_path = settings.model.checkpoint / "model_card.json"
    if card_path.exists():
        from dipro_fhir.scoring.card import read_model_card

        fallback = read_model_card(settings.model.checkpoint).name
    store = RetractionStore(connections.engine(settings))
    with connections.fhir_client(settings.fhir) as client:
        report = retract(
            client,
            store,
            request,
            chunk_size=settings.writeback.transaction_size,
            model_name=fallback,
        )
    return {"retraction_id": report.retraction_id, **report.counts()}
