"""Input limits, id checks at the entry points, log redaction and the check command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from dipro_fhir import cli
from dipro_fhir.core import log
from dipro_fhir.core.errors import ModelContractError, SourceUnavailable
from dipro_fhir.core.limits import InputLimitExceeded, InputLimits, is_fhir_id, loads
from dipro_fhir.core.settings import DicomWebSettings, Settings, StoreSettings, embedded_settings
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.run.checks import public_url, run_checks


def test_fhir_id_syntax() -> None:
    assert all(is_fhir_id(i) for i in ("a", "A-1.b", "x" * 64, "123"))
    assert not any(
        is_fhir_id(i) for i in ("", "x" * 65, "a b", "../metadata", "a/b", ".", "..", "é", 7)
    )


def test_json_depth_and_size_limits_raise_no_recursion_error() -> None:
    limits = InputLimits(max_json_depth=10, max_response_bytes=1000)
    assert loads(b'{"a": [1, {"b": 2}]}', limits) == {"a": [1, {"b": 2}]}
    with pytest.raises(InputLimitExceeded, match="deeper than 10"):
        loads("[" * 11 + "]" * 11, limits)
    with pytest.raises(InputLimitExceeded, match="parser allows"):
        loads("[" * 100_000 + "]" * 100_000, InputLimits())
    with pytest.raises(InputLimitExceeded, match="bytes"):
        loads(b" " * 1001, limits)
    with pytest.raises(ValueError, match="Expecting"):
        loads(b"{", limits)


def test_ndjson_lines_past_the_limits_are_problems_of_no_patient(tmp_path: Path) -> None:
    good = {"resourceType": "Patient", "id": "p1"}
    lines = [
        json.dumps(good),
        "[" * 2000 + "]" * 2000,
        json.dumps({"resourceType": "Patient", "id": "p2", "x": "y" * 5000}),
    ]
    (tmp_path / "Patient.ndjson").write_text("\n".join(lines) + "\n")
    source = NdjsonFhirSource(tmp_path, InputLimits(max_resource_bytes=4096))
    assert source.patient("p1")["id"] == "p1"
    codes = sorted(i.code for i in source.take_issues())
    assert codes == ["json-too-deep", "resource-too-large"]


def test_the_cli_refuses_invalid_patient_ids(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["score", "--patient", "../metadata"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "not a FHIR id (11 characters" in err
    assert "../metadata" not in err.split("argument --patient:")[-1]


def test_third_party_records_are_redacted_by_the_handler_filter() -> None:
    handler = logging.Handler()
    handler.addFilter(log.RedactFilter())
    record = logging.LogRecord(
        "dicomweb_client.api", logging.WARNING, __file__, 1,
        "GET /studies/%s from /data/pacs/1.2.840.1/x.dcm", ("1.2.826.0.1.3680043.2.1",), None,
    )  # fmt: skip
    assert handler.filter(record)
    assert record.getMessage() == "GET <path> from <path>"
    own = logging.LogRecord("dipro_fhir.x", logging.INFO, __file__, 1, "run %s", ("r-1",), None)
    assert handler.filter(own)
    assert own.getMessage() == "run r-1"


def test_patient_tags_depend_on_a_secret_salt() -> None:
    assert log.patient_tag("p1", "site-a") != log.patient_tag("p1", "site-b")
    assert log.patient_tag("p1") == log.patient_tag("p1")  # stable within the process
    assert log.patient_tag("p1") != log.patient_tag("p1", "dipro-fhir")  # no public default


def test_the_demo_config_gets_its_own_salt(tmp_path: Path) -> None:
    salt = embedded_settings(tmp_path).run.log_salt
    assert salt is not None
    assert len(salt.get_secret_value()) == 32
    assert embedded_settings(tmp_path).run.log_salt == salt  # kept in the work folder
    assert embedded_settings(tmp_path / "other").run.log_salt != salt


def test_check_prints_no_credentials_and_says_unreachable(tmp_path: Path) -> None:
    assert public_url("https://user:pw@pacs.example.org:8443/dicom-web?token=x") == (
        "https://pacs.example.org:8443/dicom-web"
    )
    settings = Settings(
        dicomweb=DicomWebSettings(folder=tmp_path),
        store=StoreSettings(url=SecretStr("postgresql+psycopg2://u:s3cret@127.0.0.1:9/none")),
    )
    results = {name: (ok, detail) for name, ok, detail in run_checks(settings)}
    ok, detail = results["database"]
    assert not ok
    assert detail.startswith("unreachable (OperationalError)")
    assert "s3cret" not in detail
    assert "schema" not in detail


def test_a_run_on_an_unreachable_database_says_so(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dipro_fhir.run.pipeline import RunRequest, plan_run
    from tests.checkpoints import write_tiny_checkpoint

    settings = embedded_settings(tmp_path).model_copy(
        update={"store": StoreSettings(url=SecretStr("postgresql+psycopg2://u@127.0.0.1:9/x"))}
    )
    (tmp_path / "cohort" / "dicom").mkdir(parents=True)
    write_tiny_checkpoint(settings.model.checkpoint)
    request = RunRequest(as_of=datetime(2026, 1, 1, tzinfo=UTC), dag_run_id="x")
    with pytest.raises(SourceUnavailable, match="database is unreachable"):
        plan_run(settings, request)


def test_a_missing_checkpoint_stops_a_run_with_the_setting_to_fix(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dipro_fhir.run.pipeline import RunRequest, plan_run

    settings = embedded_settings(tmp_path)
    request = RunRequest(as_of=datetime(2026, 1, 1, tzinfo=UTC), dag_run_id="x")
    with pytest.raises(ModelContractError, match="DIPRO_MODEL__CHECKPOINT"):
        plan_run(settings, request)
    results = {name: (ok, detail) for name, ok, detail in run_checks(settings)}
    assert results["model"][0] is False
    assert "model_card.json" in results["model"][1]


def test_db_upgrade_on_an_unreachable_database_says_so_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIPRO_STORE__URL", "postgresql+psycopg2://u:s3cret@127.0.0.1:9/none")
    assert cli.main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "unreachable" in err
    assert "Connection refused" in err or "port 9" in err
    assert "s3cret" not in err


def test_the_cli_names_a_bad_time_a_bad_patients_file_and_an_unwritable_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["score", "--as-of", "yesterday"]) == 2
    assert "'yesterday' is not an ISO 8601 time" in capsys.readouterr().err
    missing = tmp_path / "absent.txt"
    assert cli.main(["train", "--patients-file", str(missing), "--out", str(tmp_path)]) == 2
    assert f"patients file {missing}" in capsys.readouterr().err
    ids = tmp_path / "ids.txt"
    ids.write_text("p-1\n\nsecret name\n")
    assert (
        cli.main(
            ["retract", "--patients-file", str(ids), "--model-version", "1", "--reason", "test"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "line 3: not a FHIR id" in err
    assert "secret" not in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["-q", "synth", "write", "--out", str(blocker / "sub"), "--patients", "1"]) == 2
    assert "error:" in capsys.readouterr().err


def test_check_fails_an_ndjson_folder_without_patients_and_lists_what_it_reads(
    tmp_path: Path,
) -> None:
    import gzip
    import json

    from dipro_fhir.core.settings import FhirSettings

    folder = tmp_path / "export"
    folder.mkdir()
    settings = embedded_settings(tmp_path).model_copy(
        update={"fhir": FhirSettings(ndjson_dir=folder)}
    )
    (tmp_path / "cohort" / "dicom").mkdir(parents=True)
    results = {name: (ok, detail) for name, ok, detail in run_checks(settings)}
    assert results["fhir"][0] is False
    assert "holds Patient, Encounter, Observation resources" in results["fhir"][1]

    for name, resource in (
        ("MimicPatient.ndjson.gz", {"resourceType": "Patient", "id": "p"}),
        ("MimicEncounterICU.ndjson.gz", {"resourceType": "Encounter", "id": "e"}),
        ("MimicObservationChartevents.ndjson.gz", {"resourceType": "Observation", "id": "o"}),
    ):
        with gzip.open(folder / name, "wt") as handle:
            handle.write(json.dumps(resource) + "\n")
    results = {name: (ok, detail) for name, ok, detail in run_checks(settings)}
    assert results["fhir"] == (
        True,
        f"NDJSON folder {folder}; files by type: Encounter 1, Observation 1, Patient 1",
    )


def test_a_bad_setting_is_one_line_naming_the_variable_without_its_value() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "DIPRO_FHIR__TIMEOUT_S": "notanumber-s3cret"}
    done = subprocess.run(
        [sys.executable, "-m", "dipro_fhir.cli", "check"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: setting DIPRO_FHIR__TIMEOUT_S: Input should be a valid number, "
        "unable to parse string as a number"
    ]
    assert "s3cret" not in done.stdout + done.stderr
