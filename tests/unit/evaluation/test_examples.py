"""Which stay a patient's labelled example comes from: the first by date, not by file order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dipro_fhir.core.settings import embedded_settings
from dipro_fhir.evaluation.examples import labelled_example
from dipro_fhir.fhir import NdjsonFhirSource
from dipro_fhir.imaging.sources import FolderImageSource
from dipro_fhir.run.extract import extract_options
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import write_files

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_the_example_is_the_first_finished_stay_by_date_whatever_the_file_order(
    tmp_path: Path,
) -> None:
    (patient,) = list(generate_cohort(1, seed=2, start=START))
    write_files([patient], tmp_path / "cohort", image_size=(64, 64))
    encounters = tmp_path / "cohort" / "Encounter.ndjson"
    first = json.loads(encounters.read_text().splitlines()[0])
    earlier_start = datetime.fromisoformat(first["period"]["start"]) - timedelta(days=60)
    earlier = {
        **first,
        "id": "earlier-stay",
        "period": {
            "start": earlier_start.isoformat(),
            "end": (earlier_start + timedelta(days=4)).isoformat(),
        },
    }
    earlier.pop("partOf", None)
    with encounters.open("a") as handle:  # after the later stay in the file
        handle.write(json.dumps(earlier) + "\n")
    settings = embedded_settings(tmp_path)
    options = extract_options(settings, crop_size=64, max_cxrs=4)
    source = NdjsonFhirSource(tmp_path / "cohort")
    images = FolderImageSource(tmp_path / "cohort" / "dicom")

    example = labelled_example(source, images, patient.patient_id, options)

    assert not isinstance(example, str), example
    assert example.timeline.encounter_id == "earlier-stay"
    assert example.timeline.as_of == earlier_start + timedelta(hours=48)
