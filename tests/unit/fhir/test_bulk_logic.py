"""The pure parts of the Bulk Data client: kick-off parameters, the night's export plan
(``_since`` with the window's lookback), poll delays, manifests, and file verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dipro_fhir.fhir.bulk import BulkExportError, ExportManifest, OutputFile, PollPolicy
from dipro_fhir.fhir.bulk_files import verify_ndjson
from dipro_fhir.fhir.bulk_requests import (
    CONTEXT_TYPES,
    WINDOW_TYPES,
    ExportRequest,
    code_filter,
    code_tokens,
    export_requests,
)
from dipro_fhir.run.bulk import cohort_group

AS_OF = datetime(2026, 11, 24, 2, tzinfo=UTC)


def test_group_kick_off_names_types_since_and_filters() -> None:
    request = ExportRequest(
        ("Observation",), "icu", AS_OF, ("Observation?combo-code=http://loinc.org|8867-4",)
    )
    assert request.path == "Group/icu/$export"
    assert request.params() == [
        ("_outputFormat", "application/fhir+ndjson"),
        ("_type", "Observation"),
        ("_since", "2026-11-24T02:00:00+00:00"),
        ("_typeFilter", "Observation?combo-code=http://loinc.org|8867-4"),
    ]
    assert ("_typeFilter", request.type_filters[0]) not in request.params(with_filters=False)
    assert ExportRequest(("Patient",)).path == "$export"


def test_naive_since_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        ExportRequest(("Patient",), since=datetime(2026, 1, 1)).params()


@pytest.mark.parametrize(
    ("watermark", "since"),
    [
        (None, AS_OF - timedelta(hours=48)),  # first night: the window itself
        (AS_OF - timedelta(hours=24), AS_OF - timedelta(hours=72)),  # last night's run
        (AS_OF + timedelta(hours=5), AS_OF - timedelta(hours=48)),  # a backfill behind it
    ],
)
def test_observations_since_the_watermark_less_the_window(
    watermark: datetime | None, since: datetime
) -> None:
    context, window = export_requests(
        group_id="g", as_of=AS_OF, window_hours=48, watermark=watermark, observation_filter="F"
    )
    assert (context.types, context.since, context.type_filters) == (CONTEXT_TYPES, None, ())
    assert (window.types, window.since, window.type_filters) == (WINDOW_TYPES, since, ("F",))
    assert context.group_id == window.group_id == "g"


def test_code_filter_keeps_components_and_long_lists() -> None:
    assert code_filter(["http://loinc.org|8867-4", "x"]) == (
        "Observation?combo-code=http://loinc.org|8867-4,x"
    )
    assert code_filter([]) is None
    assert len(code_filter(["c" * 50] * 200) or "") > 10_000  # sent in a POST kick-off
    assert code_tokens([("http://loinc.org", "8867-4"), ("", "x"), ("http://a", "1")]) == [
        "http://a|1",
        "http://loinc.org|8867-4",
        "x",
    ]


def test_post_kick_off_parameters_carry_the_same_query() -> None:
    since = datetime(2026, 11, 22, 2, tzinfo=UTC)
    request = ExportRequest(("Observation",), "g", since, ("Observation?combo-code=a,b",))
    body = request.parameters()
    assert body["resourceType"] == "Parameters"
    as_pairs = [(p["name"], p.get("valueString", p.get("valueInstant"))) for p in body["parameter"]]
    assert as_pairs == request.params()
    assert {"name": "_since", "valueInstant": since.isoformat()} in body["parameter"]
    assert "_typeFilter" not in str(request.parameters(with_filters=False))


def test_poll_delay_honours_retry_after_with_a_cap_and_backs_off_without() -> None:
    policy = PollPolicy(initial_s=1.0, max_s=30.0)
    assert policy.delay_s(1, 7.0) == 7.0
    assert policy.delay_s(1, 600.0) == 30.0
    assert [policy.delay_s(n, None) for n in (1, 2, 3, 6)] == [1.0, 2.0, 4.0, 30.0]


def test_manifest_reads_outputs_errors_and_the_token_flag() -> None:
    manifest = ExportManifest.from_json(
        {
            "transactionTime": "2026-11-24T02:00:00Z",
            "request": "x",
            "requiresAccessToken": False,
            "output": [{"type": "Patient", "url": "http://s/1", "count": 2}, {"type": "X"}],
            "error": [{"type": "OperationOutcome", "url": "http://s/e"}],
        }
    )
    assert manifest.output == (OutputFile("Patient", "http://s/1", 2),)
    assert manifest.error == (OutputFile("OperationOutcome", "http://s/e"),)
    assert manifest.requires_access_token is False
    with pytest.raises(BulkExportError):
        ExportManifest.from_json({"resourceType": "OperationOutcome"})


def test_verify_counts_lines_and_refuses_cut_or_foreign_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.ndjson"
    good.write_text('{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient","id":"b"}\n')
    assert verify_ndjson(good, OutputFile("Patient", "u")) == 2
    with pytest.raises(BulkExportError, match="manifest 3"):
        verify_ndjson(good, OutputFile("Patient", "u", 3))
    cut = tmp_path / "cut.ndjson"
    cut.write_bytes(good.read_bytes()[:-9])
    with pytest.raises(BulkExportError, match="not JSON"):
        verify_ndjson(cut, OutputFile("Patient", "u"))
    with pytest.raises(BulkExportError, match="another type"):
        verify_ndjson(good, OutputFile("Observation", "u"))


def test_the_plan_writes_a_stable_group_of_the_cohort() -> None:
    group = cohort_group("run-1", ["p1", "p2"])
    assert group == cohort_group("run-1", ["p1", "p2"])
    assert group["id"] != cohort_group("run-2", [])["id"]
    assert [m["entity"]["reference"] for m in group["member"]] == ["Patient/p1", "Patient/p2"]
    assert group["actual"] is True
