"""``dipro-fhir codes``: every Observation code of a source, counted, mapped or with candidates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dipro_fhir.cli import main
from dipro_fhir.fhir import NdjsonFhirSource
from dipro_fhir.mapping.code_maps import default_code_maps
from dipro_fhir.reports.codes_report import count_codes

LOCAL = "https://hospital.example.org/CodeSystem/lab"


def _obs(n: int, system: str, code: str, display: str = "", **extra: Any) -> dict[str, Any]:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [coding]},
        "subject": {"reference": "Patient/p"},
        **extra,
    }


@pytest.fixture
def export(tmp_path: Path) -> Path:
    bp = {"system": "http://loinc.org", "code": "8480-6"}
    resources = [
        *(_obs(i, "http://loinc.org", "8867-4", "Heart rate") for i in range(3)),
        _obs(10, "http://loinc.org", "32713-0", "Potassium [Moles/volume] in Arterial blood"),
        _obs(11, LOCAL, "PULS", "Pulsfrequenz / pulse"),
        _obs(12, LOCAL, "XYZ", "Something else"),
        _obs(
            13,
            "http://loinc.org",
            "85354-9",
            "Blood pressure panel",
            component=[{"code": {"coding": [bp]}}],
        ),
        _obs(14, "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-chartevents-d-items", "220045"),
    ]
    (tmp_path / "Observation.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    return tmp_path


def test_codes_are_counted_mapped_or_given_candidates(export: Path) -> None:
    rows = {
        r.token: r
        for r in count_codes(NdjsonFhirSource(export).scan_observations(), default_code_maps())
    }
    assert rows["http://loinc.org|8867-4"].observations == 3
    assert rows["http://loinc.org|8867-4"].variable == "heart_rate"
    assert rows["http://loinc.org|8480-6"].variable == "systolic_blood_pressure"  # a component
    assert rows["http://loinc.org|85354-9"].variable is None
    mimic = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-chartevents-d-items|220045"
    assert rows[mimic].variable == "heart_rate"
    arterial = rows["http://loinc.org|32713-0"]
    assert [str(c) for c in arterial.candidates] == ["potassium (component)"]
    assert [str(c) for c in rows[f"{LOCAL}|PULS"].candidates] == ["heart_rate (display)"]
    assert rows[f"{LOCAL}|XYZ"].candidates == ()


def test_the_command_prints_a_table_and_json(
    export: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIPRO_FHIR__BASE_URL", raising=False)
    assert main(["codes", "--ndjson", str(export)]) == 0
    table = capsys.readouterr().out
    assert "heart_rate" in table
    assert "? potassium (component)" in table
    assert "7 codes, 3 mapped" in table
    assert main(["codes", "--ndjson", str(export), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["code"] for r in listed} >= {"8867-4", "PULS", "XYZ"}


def test_the_command_logs_nothing_of_alembic(export: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIPRO_")}
    done = subprocess.run(
        [sys.executable, "-m", "dipro_fhir.cli", "codes", "--ndjson", str(export)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert "7 codes, 3 mapped" in done.stdout
    assert "alembic" not in done.stderr
