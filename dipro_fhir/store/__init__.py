"""The results store: runs, scores and failures in PostgreSQL (SQLite for the demo)."""

from dipro_fhir.store.migrate import downgrade_database, upgrade_database
from dipro_fhir.store.results import ChunkCounts, ResultStore, RunRecord, StoredScore

__all__ = [
    "ChunkCounts",
    "ResultStore",
    "RunRecord",
    "StoredScore",
    "downgrade_database",
    "upgrade_database",
]
