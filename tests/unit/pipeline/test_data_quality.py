"""Nothing vanishes unreported: a run's data-quality summary in the summary, database, report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dipro_fhir.core.settings import MappingSettings, embedded_settings
from dipro_fhir.fhir import NdjsonFhirSource
from dipro_fhir.mapping.concept_map import UNIT_PROPERTY, VARIABLE_SYSTEM
from dipro_fhir.reports.run_report import write_report
from dipro_fhir.run.pipeline import RunRequest, run_locally
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import write_files
from tests.checkpoints import write_tiny_checkpoint

AS_OF = datetime(2026, 4, 1, 2, tzinfo=UTC)
LOCAL = "https://hospital.example.org/CodeSystem/lab"
LOCAL_TOKEN = f"{LOCAL}|NA-PL"


def _in_window(resource: dict[str, Any]) -> bool:
    when = resource.get("effectiveDateTime")
    return bool(when) and AS_OF - timedelta(hours=40) < datetime.fromisoformat(when) < AS_OF


def _add_local_data(cohort: Path) -> int:
    """Local-coded sodium values, one unresolvable urn:uuid subject and a broken line."""
    path = cohort / "Observation.ndjson"
    lines = path.read_text().splitlines()
    active = {p for p, _ in NdjsonFhirSource(cohort).active_encounter_patients(AS_OF)}
    recent = [
        r
        for r in map(json.loads, lines)
        if _in_window(r) and r["subject"]["reference"].removeprefix("Patient/") in active
    ][:3]
    extra = []
    for n, template in enumerate(recent):
        local = {k: v for k, v in template.items() if k not in ("component", "valueQuantity")}
        local["id"] = f"local-na-{n}"
        local["code"] = {
            "coding": [{"system": LOCAL, "code": "NA-PL", "display": "Natrium (Plasma)"}]
        }
        local["valueQuantity"] = {"value": 141, "unit": "mmol/l"}
        extra.append(json.dumps(local))
    orphan = dict(recent[0], id="orphan-1", subject={"reference": "urn:uuid:00000000-dead"})
    extra += [json.dumps(orphan), "{not json"]
    path.write_text("\n".join(lines + extra) + "\n")
    return len(recent)


def _site_map(folder: Path) -> Path:
    folder.mkdir()
    concept_map = {
        "resourceType": "ConceptMap",
        "url": "https://hospital.example.org/ConceptMap/lab-to-dipro",
        "version": "1",
        "status": "active",
        "group": [
            {
                "source": LOCAL,
                "target": VARIABLE_SYSTEM,
                "element": [
                    {
                        "code": "NA-PL",
                        "target": [
                            {
                                "code": "sodium",
                                "equivalence": "equivalent",
                                "product": [
                                    {
                                        "property": UNIT_PROPERTY,
                                        "system": "http://unitsofmeasure.org",
                                        "value": "mmol/L",
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (folder / "lab.json").write_text(json.dumps(concept_map))
    return folder


def test_a_run_reports_unmapped_codes_orphans_and_the_change_since_last_night(
    tmp_path: Path,
) -> None:
    patients = generate_cohort(
        4, seed=3, start=AS_OF - timedelta(days=3), admission_span_days=2, reference_time=AS_OF
    )
    write_files(patients, tmp_path / "cohort", image_size=(96, 96))
    local = _add_local_data(tmp_path / "cohort")
    settings = embedded_settings(tmp_path)
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint, name="t", version="1")

    first = run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="night-1"))
    quality = first["data_quality"]
    assert quality["unmapped_codes"][LOCAL_TOKEN] == local
    assert quality["unattributed_problems"] == {"invalid-json": 1, "unresolved-reference": 1}
    assert quality["compared_with"] is None
    assert LOCAL_TOKEN in quality["text"]

    engine = sa.create_engine(settings.store.url.get_secret_value())
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT kind, item, count FROM data_quality WHERE run_id = :r"),
            {"r": first["run_id"]},
        ).all()
        orphans = (
            conn.execute(
                sa.text("SELECT code FROM data_problems WHERE patient_id = '' ORDER BY code")
            )
            .scalars()
            .all()
        )
    assert ("unmapped-code", LOCAL_TOKEN, local) in rows
    assert ("patients", "", first["extracted"]) in rows
    assert orphans == ["invalid-json", "unresolved-reference"]

    # The next night the site maps its code: it is read, and the change is reported.
    mapped = settings.model_copy(
        update={"mapping": MappingSettings(concept_map_dir=_site_map(tmp_path / "maps"))}
    )
    later = AS_OF + timedelta(hours=1)
    second = run_locally(mapped, RunRequest(as_of=later, dag_run_id="night-2"))
    change = second["data_quality"]["compared_with"]
    assert LOCAL_TOKEN not in second["data_quality"]["unmapped_codes"]
    assert change["previous_run"] == first["run_id"]
    assert change["unmapped_change"] <= -local
    assert change["new_unmapped_codes"] == []

    report = write_report(mapped, tmp_path / "cohort", tmp_path / "report.html", later)
    html = (tmp_path / "report.html").read_text()
    assert "Data quality" in html
    assert f"vs {first['run_id']}" in report["data_quality"]
