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
from dipro_fhir.mapping.code_maps import builtin_code_maps, default_code_maps
from dipro_fhir.mapping.observations import dipro_variables_of
from dipro_fhir.reports.codes_report import count_codes, render_codes

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
    inventory = count_codes(NdjsonFhirSource(export).scan_observations(), default_code_maps())
    rows = {r.token: r for r in inventory.rows}
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


HL7 = Path(__file__).resolve().parents[2] / "data" / "fhir"
MIMIC = Path(__file__).resolve().parents[2] / "data" / "mimic-codes"
CHART = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-chartevents-d-items"
ITEMS = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-d-items"


@pytest.fixture
def hl7_export(tmp_path: Path) -> Path:
    """The vendored HL7 R4 example Observations as one NDJSON file."""
    lines = [json.dumps(json.loads(p.read_text())) for p in sorted(HL7.glob("Observation-*.json"))]
    (tmp_path / "Observation.ndjson").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_a_second_coding_of_a_mapped_observation_counts_once(hl7_export: Path) -> None:
    inventory = count_codes(NdjsonFhirSource(hl7_export).scan_observations(), default_code_maps())
    rows = {r.token: r for r in inventory.rows}
    # The systolic component of the BP examples: LOINC 8480-6 (mapped), SNOMED and acme beside.
    for token in (
        "http://snomed.info/sct|271649006",
        "http://acme.org/devices/clinical-codes|bp-s",
    ):
        assert rows[token].variable is None
        assert rows[token].through == "systolic_blood_pressure"
        assert rows[token].candidates == ()
    assert rows["urn:iso:std:iso:11073:10101|150456"].through == "oxygen_saturation"
    assert rows["http://snomed.info/sct|27113001"].through == "weight"
    # Observation-example (a weight with four codings, two of them mapped) is one Observation
    # read, and so is each BP Observation with three codings of its systolic component.
    resources = [json.loads(p.read_text()) for p in sorted(HL7.glob("Observation-*.json"))]
    assert inventory.observations == len(resources)
    assert inventory.read == sum(bool(dipro_variables_of(r)) for r in resources)
    summary = render_codes(inventory).splitlines()[-1]
    assert "7 through another coding" in summary  # SNOMED, acme, ISO 11073 codings
    assert f"Observations: {len(resources)} ({inventory.read} with a mapped code" in summary


def test_a_panel_is_shown_with_its_mapped_components(hl7_export: Path) -> None:
    inventory = count_codes(NdjsonFhirSource(hl7_export).scan_observations(), default_code_maps())
    rows = {r.token: r for r in inventory.rows}
    panel = rows["http://loinc.org|85354-9"]
    assert panel.panel_of == ("diastolic_blood_pressure", "systolic_blood_pressure")
    assert panel.candidates == ()
    gcs_total = rows["http://loinc.org|9269-2"]
    assert gcs_total.panel_of == ("gcs_eye_opening", "gcs_motor_response", "gcs_verbal_response")
    table = render_codes(inventory)
    assert "panel: diastolic_blood_pressure, systolic_blood_pressure" in table
    assert "= systolic_blood_pressure (other coding)" in table


def test_egfr_is_not_offered_as_creatinine(hl7_export: Path) -> None:
    inventory = count_codes(NdjsonFhirSource(hl7_export).scan_observations(), default_code_maps())
    rows = {r.token: r for r in inventory.rows}
    for egfr in ("33914-3", "48642-3", "48643-1"):  # Observation-f205, in mL/min/{1.73_m2}
        assert rows[f"http://loinc.org|{egfr}"].candidates == ()
    creatinine = rows["https://intranet.aumc.nl/labtestcodes|20005"]  # Observation-f204
    assert [c.variable for c in creatinine.candidates] == ["creatinine"]
    assert creatinine.unit == "umol/L"


def test_the_table_and_json_show_unit_and_value_type(
    export: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIPRO_FHIR__BASE_URL", raising=False)
    assert main(["codes", "--ndjson", str(MIMIC)]) == 0
    table = capsys.readouterr().out
    header, *lines = table.splitlines()
    assert header.split()[:6] == ["count", "DiPro", "variable", "(or", "?", "candidates)"]
    assert header.split()[6:8] == ["unit", "value"]
    rhythm = next(line for line in lines if line.endswith("Heart Rhythm"))
    assert rhythm.split()[1:5] == ["?", "-", "-", "String"]
    rate = next(line for line in lines if line.endswith("Heart Rate"))
    assert rate.split()[1:4] == ["heart_rate", "/min", "Quantity"]
    assert main(["codes", "--ndjson", str(MIMIC), "--json"]) == 0
    listed = {r["code"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["220045"]["unit"] == "/min"
    assert listed["220045"]["value_types"] == {"Quantity": 3}
    assert listed["900001"]["value_types"] == {"DateTime": 2}
    assert listed["900001"]["candidates"] == []
    assert listed["227442"]["variable"] == "potassium"


def test_mimic_items_get_the_right_candidates_or_none() -> None:
    """A site writing its MIMIC map from scratch (the LOINC map only)."""
    inventory = count_codes(
        NdjsonFhirSource(MIMIC).scan_observations(), builtin_code_maps(("loinc",))
    )
    first = {r.token: [c.variable for c in r.candidates] for r in inventory.rows}
    assert first[f"{CHART}|220045"] == ["heart_rate"]  # Heart Rate
    assert first[f"{CHART}|220048"] == []  # Heart Rhythm, a text
    assert first[f"{CHART}|220046"] == []  # Heart rate Alarm - High
    assert first[f"{CHART}|227442"] == ["potassium"]  # Potassium (serum)
    koh = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-microbiology-test|900002"
    assert first[koh] == []
    for route in ("226559", "226560", "226561", "226567"):  # Foley, Void, Condom Cath, Straight
        assert first[f"{ITEMS}|{route}"] == ["urine_output"]
    assert first[f"{ITEMS}|900001"] == []  # Foley Catheter Insertion Date


def test_the_precision_script_judges_every_code_against_the_truth_table() -> None:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "codes_precision.py"), "--hl7", str(HL7)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # no code missing from the table
    assert done.stdout.count("suggestions right:") == 3
    assert "NOT IN THE TRUTH TABLE" not in done.stdout
