"""A write-back worker in its own process, for ``kill -9`` tests.

``python -m tests.integration.writeback.write_child FHIR_BASE PG_URL N_PATIENTS RUN_ID``
writes the scores of ``N_PATIENTS`` test patients in one chunk (transactions of 5) and
records them in the store, as a pipeline worker does.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

from dipro_fhir.core.timeline import RunId
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.store import ResultStore
from dipro_fhir.writeback.assessment import AssessmentOptions
from dipro_fhir.writeback.sinks import FhirResultSink
from dipro_fhir.writeback.write import publish_chunk
from tests.unit.writeback.scores import MODEL, cohort_scores


def main(base_url: str, pg_url: str, n_patients: int, run_id: str) -> None:
    """Write and record one chunk."""
    engine = sa.create_engine(pg_url)
    store = ResultStore(engine)
    with FhirClient(base_url) as client:
        publish_chunk(
            FhirResultSink(client),
            store,
            RunId(run_id),
            cohort_scores(n_patients, run_id=run_id),
            MODEL,
            options=AssessmentOptions(transaction_size=5),
        )
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
