"""A retraction in its own process, for ``kill -9`` tests.

``python -m tests.integration.writeback.retract_child FHIR_BASE PG_URL VERSION CHUNK``
retracts model version ``VERSION`` (transactions of ``CHUNK`` RiskAssessments).
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.store.retractions import RetractionRequest, RetractionStore
from dipro_fhir.writeback.retract import retract

REASON = "model withdrawn: calibration drift"


def main(base_url: str, pg_url: str, version: str, chunk_size: int) -> None:
    """Run one retraction."""
    engine = sa.create_engine(pg_url)
    with FhirClient(base_url) as client:
        retract(
            client,
            RetractionStore(engine),
            RetractionRequest(version, REASON),
            chunk_size=chunk_size,
        )
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
