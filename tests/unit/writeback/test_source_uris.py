"""A logical reference's URI is absolute on every source (issue 23, item 17).

The identifier of a source reference has system ``urn:ietf:rfc:3986``: its value must be an
absolute URI. Data read from NDJSON files had ``Observation/123``; it is now
``file:///<folder>/Observation/123``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from dipro_fhir.core.settings import embedded_settings
from dipro_fhir.run.pipeline import RunRequest, run_locally
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import write_files
from tests.checkpoints import write_tiny_checkpoint

AS_OF = datetime(2026, 4, 1, 2, tzinfo=UTC)


def test_references_to_data_from_files_are_absolute_file_uris(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    people = generate_cohort(
        3, seed=5, start=AS_OF - timedelta(days=3), admission_span_days=2, reference_time=AS_OF
    )
    write_files(people, cohort, image_size=(96, 96))
    settings = embedded_settings(tmp_path)
    settings = settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": cohort}),
            "run": settings.run.model_copy(update={"max_failed_share": 1.0}),
        }
    )
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint, name="t", version="1")
    run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="uris"))

    written = [
        json.loads(line)
        for path in (tmp_path / "results").rglob("*.ndjson")
        for line in path.read_text().splitlines()
    ]
    basis = [
        ref
        for r in written
        if r.get("resourceType") == "RiskAssessment"
        for ref in r.get("basis", [])
    ]
    assert basis
    for ref in basis:
        uri = ref["identifier"]["value"]
        parts = urlsplit(uri)
        assert parts.scheme == "file", uri
        assert uri.endswith("/" + ref["display"])
        assert Path(parts.path.removesuffix("/" + ref["display"])) == cohort.resolve()
