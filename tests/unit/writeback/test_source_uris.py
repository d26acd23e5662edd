"""A logical reference's URI is absolute on every source (issue 23, item 17).

The identifier of a source reference has system ``urn:ietf:rfc:3986``: its value must be an
absolute URI. Data read from NDJSON files had ``Observation/123``; it is now
``file:///<folder>/Observation/123``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from dipro_fhir.run.pipeline import RunRequest, run_locally
from tests.embedded import cohort_run_settings

AS_OF = datetime(2026, 4, 1, 2, tzinfo=UTC)


def test_references_to_data_from_files_are_absolute_file_uris(tmp_path: Path) -> None:
    settings = cohort_run_settings(tmp_path, AS_OF, patients=3, seed=5)
    cohort = tmp_path / "cohort"
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
