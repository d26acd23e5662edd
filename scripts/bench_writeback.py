"""Benchmark write-back: RiskAssessments/s to a FHIR server, score rows/s to PostgreSQL.

By default it starts the test FHIR harness the way the pytest fixture does and creates (then
drops) a scratch database on the local PostgreSQL; ``--fhir-url`` / ``--pg-url`` point it at
existing ones instead. Synthetic scores: every outcome of every task per patient (3
RiskAssessments and 26 score rows per patient).

    .venv/bin/python scripts/bench_writeback.py --patients 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dipro_fhir.core.timeline import RunId  # noqa: E402
from dipro_fhir.fhir.client import FhirClient  # noqa: E402
from dipro_fhir.store import ResultStore, upgrade_database  # noqa: E402
from dipro_fhir.writeback.assessment import AssessmentOptions  # noqa: E402
from dipro_fhir.writeback.sinks import FhirResultSink  # noqa: E402
from dipro_fhir.writeback.write import write_scores  # noqa: E402
from tests.unit.writeback.scores import AS_OF, MODEL, cohort_scores  # noqa: E402


@contextmanager
def fhir_base(url: str | None) -> Iterator[str]:
    """Yield the given FHIR base, or start the test harness for the duration."""
    if url:
        yield url
        return
    from tests.servers.fhir_server import start_fhir_server

    server = start_fhir_server()
    try:
        yield server.base_url
    finally:
        server.stop()


@contextmanager
def pg_database(url: str | None) -> Iterator[str]:
    """Yield the given database URL, or a scratch database on the local PostgreSQL."""
    if url:
        yield url
        return
    admin = sa.create_engine(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    name = f"dipro_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_fhir(url: str, scores: list, size: int) -> dict[str, float]:  # type: ignore[type-arg]
    """Time a first write and an identical re-run (reads back, writes nothing)."""
    options = AssessmentOptions(transaction_size=size)
    with FhirClient(url) as client:
        sink = FhirResultSink(client)
        start = time.perf_counter()
        first = write_scores(sink, scores, MODEL, options)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        again = write_scores(sink, scores, MODEL, options)
        again_s = time.perf_counter() - start
    if first.failures or again.written:
        raise SystemExit("write-back benchmark saw failures or a re-run that wrote")
    return {
        "risk_assessments": first.written,
        "first_write_s": round(first_s, 3),
        "risk_assessments_per_s": round(first.written / first_s, 1),
        "rerun_s": round(again_s, 3),
        "rerun_checked_per_s": round(again.unchanged / again_s, 1),
    }


def bench_pg(url: str, scores: list, per_chunk: int) -> dict[str, float]:  # type: ignore[type-arg]
    """Time recording the scores in chunks of ``per_chunk`` rows, then again (upserts)."""
    upgrade_database(url)
    engine = sa.create_engine(url)
    store = ResultStore(engine)
    run = RunId("bench")
    store.start_run(run, as_of=AS_OF, model_name=MODEL.name, model_version=MODEL.version)
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        for i in range(0, len(scores), per_chunk):
            store.record_chunk(run, scores[i : i + per_chunk])
        timings.append(time.perf_counter() - start)
    engine.dispose()
    return {
        "score_rows": len(scores),
        "first_write_s": round(timings[0], 3),
        "score_rows_per_s": round(len(scores) / timings[0], 1),
        "rerun_upsert_s": round(timings[1], 3),
        "rerun_rows_per_s": round(len(scores) / timings[1], 1),
    }


def main() -> None:
    """Run both benchmarks and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--transaction-size", type=int, default=100)
    parser.add_argument("--chunk-patients", type=int, default=50)
    parser.add_argument("--fhir-url")
    parser.add_argument("--pg-url")
    args = parser.parse_args()
    scores = cohort_scores(args.patients)
    result: dict[str, object] = {"patients": args.patients}
    with fhir_base(args.fhir_url) as url:
        result["fhir"] = bench_fhir(url, scores, args.transaction_size)
    with pg_database(args.pg_url) as url:
        result["postgresql"] = bench_pg(url, scores, 26 * args.chunk_patients)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
