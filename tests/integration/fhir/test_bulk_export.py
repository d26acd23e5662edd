"""The Bulk Data ``$export`` client against HAPI FHIR: round trip into a staging folder that
the NDJSON source reads, incremental ``_since``, ``_typeFilter`` fallback, and faults from the
fault proxy (429 with Retry-After and 503 while polling, a connection reset and a body cut
short while downloading) that lose nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dipro_fhir.core.manifest import ChunkManifest
from dipro_fhir.core.settings import FhirSettings, Settings
from dipro_fhir.fhir.bulk import (
    MAX_QUERY_CHARS,
    BulkExportClient,
    BulkExportError,
    ExportJob,
    ExportManifest,
    PollPolicy,
)
from dipro_fhir.fhir.bulk_files import DownloadReport, download_export
from dipro_fhir.fhir.bulk_requests import ExportRequest, code_filter, code_tokens, export_requests
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.fhir.retry import RetryPolicy
from dipro_fhir.fhir.source import HttpFhirSource
from dipro_fhir.mapping.code_maps import default_code_maps
from dipro_fhir.run.bulk import cohort_group, finish_export, poll_export
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import load_into_servers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AS_OF = datetime(2026, 11, 24, 2, tzinfo=UTC)
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_s=0.05, max_backoff_s=0.2)
FAST_POLL = PollPolicy(initial_s=0.3, max_s=2.0, timeout_s=180.0)


class _NoImages:
    def store(self, datasets: Any) -> None:
        """The export tests read FHIR only."""


@pytest.fixture(scope="module")
def cohort(hapi_server: Any) -> Iterator[tuple[str, list[str]]]:
    """Three synthetic patients (about 1,200 Observations) and a Group of two of them."""
    hapi_server.reset()
    patients = generate_cohort(
        3,
        seed=5,
        start=AS_OF - timedelta(days=4),
        admission_span_days=3.5,
        reference_time=AS_OF,
        id_prefix="bulk",
    )
    with FhirClient(hapi_server.base_url) as client:
        report = load_into_servers(
            patients, client, _NoImages(), dicomweb_base_url="http://dicom.invalid/dicom-web"
        )
        assert report.count("Observation") > 600
        ids = sorted(r["id"] for r in client.search("Patient", {}))
        client.put(cohort_group("bulk-test-run", ids[:2]))
    yield hapi_server.base_url, ids
    hapi_server.reset()


def _export(
    base_url: str, requests: list[ExportRequest], folder: Path
) -> tuple[DownloadReport, list[ExportManifest], BulkExportClient]:
    with FhirClient(base_url, retry=FAST_RETRY) as client:
        bulk = BulkExportClient(client, FAST_POLL)
        jobs = [bulk.kick_off(r) for r in requests]
        manifests = bulk.wait(jobs)
        report = download_export(client, manifests, folder)
        bulk.cancel_all(jobs)
    return report, manifests, bulk


def _group_id() -> str:
    return str(cohort_group("bulk-test-run", [])["id"])


def _ids(source: NdjsonFhirSource, resource_type: str) -> set[str]:
    return {str(r["id"]) for _, r in source._stream(resource_type)}


def test_group_export_round_trip_into_staging(
    cohort: tuple[str, list[str]], tmp_path: Path
) -> None:
    base_url, ids = cohort
    members = ids[:2]
    requests = export_requests(
        group_id=_group_id(), as_of=AS_OF, window_hours=48, watermark=None,
        observation_filter=None,
    )  # fmt: skip

    report, manifests, bulk = _export(base_url, requests, tmp_path / "bulk")

    assert bulk.stats.kickoffs == 2
    assert [m.error for m in manifests] == [(), ()]
    source = NdjsonFhirSource(tmp_path / "bulk")
    assert _ids(source, "Patient") == set(members)  # the Group's members, not the third
    assert not list((tmp_path / "bulk").glob("**/*.part"))
    with FhirClient(base_url) as client:
        rest = HttpFhirSource(client)
        for pid in members:
            window = {"since": AS_OF - timedelta(days=30), "until": AS_OF + timedelta(days=30)}
            want = {o["id"] for o in rest.observations(pid, **window)}
            got = {o["id"] for o in source.observations(pid, **window)}
            assert want
            assert got == want
            assert {e["id"] for e in source.encounters(pid)} == {
                e["id"] for e in rest.encounters(pid)
            }
        expected = sum(client.count("Observation", {"subject": f"Patient/{p}"}) for p in members)
    assert report.lines_by_type()["Observation"] == expected


def test_incremental_since_fetches_only_changed_resources(
    cohort: tuple[str, list[str]], tmp_path: Path
) -> None:
    base_url, ids = cohort
    first, manifests, _ = _export(
        base_url, [ExportRequest(("Observation",), _group_id())], tmp_path / "night1"
    )
    watermark = datetime.fromisoformat(manifests[0].transaction_time)
    with FhirClient(base_url) as client:
        changed = list(
            client.search("Observation", {"subject": f"Patient/{ids[0]}", "_count": "3"})
        )
        changed = changed[:3]
        for obs in changed:
            obs["status"] = "amended"
            client.put(obs)
        # A change to a patient outside the Group is not exported.
        outside = next(iter(client.search("Observation", {"subject": f"Patient/{ids[2]}"})))
        outside["status"] = "amended"
        client.put(outside)

    second, _, _ = _export(
        base_url,
        [ExportRequest(("Observation",), _group_id(), since=watermark)],
        tmp_path / "night2",
    )

    assert first.lines_by_type()["Observation"] > 400
    assert second.lines_by_type() == {"Observation": 3}
    source = NdjsonFhirSource(tmp_path / "night2")
    assert _ids(source, "Observation") == {o["id"] for o in changed}


def test_refused_type_filter_falls_back_to_an_export_without_it(
    cohort: tuple[str, list[str]], tmp_path: Path, fault_proxy: Any
) -> None:
    base_url, _ = cohort
    proxy = fault_proxy(base_url)
    proxy.inject("status", times=1, match=r"_typeFilter", status=400)
    request = ExportRequest(
        ("Patient",), _group_id(), type_filters=("Observation?code=http://loinc.org|8867-4",)
    )
    with FhirClient(proxy.base_url, retry=FAST_RETRY) as client:
        bulk = BulkExportClient(client, FAST_POLL)
        job = bulk.kick_off(request)
        manifests = bulk.wait([job])
        report = download_export(client, manifests, tmp_path)
    assert not job.type_filter_used
    assert bulk.stats.type_filter_refused == 1
    assert proxy.count(r"_typeFilter") == 1
    assert proxy.count(r"/\$export\?") == 2
    assert report.lines_by_type() == {"Patient": 2}


def test_faults_while_polling_and_downloading_lose_nothing(
    cohort: tuple[str, list[str]], tmp_path: Path, fault_proxy: Any
) -> None:
    base_url, _ = cohort
    requests = [ExportRequest(("Patient", "Encounter", "Observation"), _group_id())]
    clean, _, _ = _export(base_url, requests, tmp_path / "clean")
    proxy = fault_proxy(base_url)
    poll = r"export-poll-status"
    proxy.inject("429", times=2, match=poll, method="GET", retry_after=1)
    proxy.inject("503", times=1, match=poll, method="GET")
    proxy.inject("truncate", times=1, match=r"/Binary/", method="GET")  # cut mid-file
    proxy.inject("reset", times=1, match=r"/Binary/", method="GET")

    faulted, _, bulk = _export(proxy.base_url, requests, tmp_path / "faulted")

    assert proxy.pending_faults() == 0
    assert faulted.lines_by_type() == clean.lines_by_type()
    assert faulted.bytes == clean.bytes
    for resource_type in ("Patient", "Encounter", "Observation"):
        assert _ids(NdjsonFhirSource(tmp_path / "faulted"), resource_type) == _ids(
            NdjsonFhirSource(tmp_path / "clean"), resource_type
        )
    assert any(f.attempts > 1 for f in faulted.files)  # the cut file was fetched again
    assert faulted.requests == len(faulted.files) + 1
    assert not list((tmp_path / "faulted").glob("**/*.part"))
    assert bulk.stats.polls >= 1


def test_a_server_that_stays_unreachable_fails_the_export_and_cancels_it(
    cohort: tuple[str, list[str]], fault_proxy: Any
) -> None:
    base_url, _ = cohort
    proxy = fault_proxy(base_url)
    poll = r"export-poll-status"
    request = ExportRequest(("Patient",), _group_id())
    policy = PollPolicy(initial_s=0.1, max_s=0.3, timeout_s=180.0, unreachable_s=2.0)
    with FhirClient(proxy.base_url, retry=FAST_RETRY) as client:
        bulk = BulkExportClient(client, policy)
        job = bulk.kick_off(request)
        proxy.inject("reset", times=10_000, match=poll)  # every poll and the cancel
        started = time.monotonic()
        with pytest.raises(BulkExportError, match="unreachable for"):
            bulk.wait([job])
        elapsed = time.monotonic() - started
    assert 2.0 < elapsed < 60.0  # not the 180 s timeout
    assert proxy.count(poll, method="GET") >= 2 * FAST_RETRY.max_attempts
    assert proxy.count(poll, method="DELETE") >= 1  # it tried to cancel
    proxy.clear()
    with FhirClient(base_url) as client:
        assert BulkExportClient(client).cancel(job)


def test_the_trigger_state_remembers_since_when_the_server_is_unreachable(
    cohort: tuple[str, list[str]], tmp_path: Path, fault_proxy: Any
) -> None:
    base_url, _ = cohort
    proxy = fault_proxy(base_url)
    poll = r"export-poll-status"
    fhir = FhirSettings(
        base_url=proxy.base_url, max_retries=0, bulk_poll_max_s=0.5, bulk_unreachable_s=3.0
    )
    settings = Settings(fhir=fhir)
    with FhirClient(proxy.base_url) as client:
        job = BulkExportClient(client).kick_off(ExportRequest(("Patient",), _group_id()))
    state: dict[str, Any] = {"folder": str(tmp_path), "jobs": [job.to_json()], "requests": []}
    proxy.inject("reset", times=10_000, match=poll, method="GET")
    first = poll_export(settings, state)
    assert not first["done"]
    since = first["state"]["unreachable_since"]
    assert since is not None
    time.sleep(0.3)
    # Still unreachable, within the limit: the first time stays.
    second = poll_export(settings, first["state"])
    assert second["state"]["unreachable_since"] == since
    time.sleep(3.0)
    with pytest.raises(BulkExportError, match="unreachable for"):
        poll_export(settings, second["state"])
    proxy.clear()
    # Reachable again: the clock is reset.
    answered = poll_export(settings, second["state"])
    assert answered["state"]["unreachable_since"] is None
    with FhirClient(base_url) as client:
        BulkExportClient(client).cancel(job)


def test_type_filter_narrows_the_observations(
    cohort: tuple[str, list[str]], tmp_path: Path
) -> None:
    base_url, ids = cohort
    with FhirClient(base_url) as client:
        first = next(iter(client.search("Observation", {"subject": f"Patient/{ids[0]}"})))
        coding = first["code"]["coding"][0]
        token = f"{coding['system']}|{coding['code']}"
        members = [f"Patient/{p}" for p in ids[:2]]
        expected = client.count("Observation", {"subject": ",".join(members), "code": token})
    request = ExportRequest(
        ("Observation",), _group_id(), type_filters=(f"Observation?code={token}",)
    )

    report, _, bulk = _export(base_url, [request], tmp_path)

    assert bulk.stats.type_filter_refused == 0
    assert report.lines_by_type() == {"Observation": expected}
    codes = {
        (c["system"], c["code"])
        for _, o in NdjsonFhirSource(tmp_path)._stream("Observation")
        for c in o["code"]["coding"][:1]
    }
    assert codes == {(coding["system"], coding["code"])}


def test_a_job_the_server_fails_with_a_type_filter_runs_again_without_it(
    cohort: tuple[str, list[str]], tmp_path: Path
) -> None:
    base_url, ids = cohort
    settings = Settings(fhir=FhirSettings(base_url=base_url, bulk_poll_max_s=2.0))
    request = ExportRequest(("Patient",), _group_id(), type_filters=("Patient?bogus-param=1",))
    with FhirClient(base_url) as client:
        job = BulkExportClient(client).kick_off(request)
    assert job.type_filter_used  # HAPI takes it at kick-off and fails the job later
    state: dict[str, Any] = {
        "folder": str(tmp_path / "bulk"),
        "jobs": [job.to_json()],
        "requests": [{"types": ["Patient"], "group_id": _group_id(), "since": None,
                      "type_filters": list(request.type_filters)}],
    }  # fmt: skip
    for _ in range(120):
        outcome = poll_export(settings, state)
        state = outcome["state"]
        if outcome["done"]:
            break
        time.sleep(outcome["retry_after_s"])
    assert outcome["done"]
    assert not ExportJob.from_json(state["jobs"][0]).type_filter_used
    chunk = ChunkManifest("run", 0, AS_OF.isoformat(), tuple((p, None) for p in ids[:2]))
    [done] = finish_export(settings, state, [chunk.to_xcom()])
    assert done["ndjson_dir"] == state["folder"]
    assert done["counts"]["bulk.Patient"] == 2
    assert _ids(NdjsonFhirSource(done["ndjson_dir"]), "Patient") == set(ids[:2])


def test_the_default_maps_filter_goes_in_a_post_kick_off_and_drops_unmapped_codes(
    cohort: tuple[str, list[str]], tmp_path: Path
) -> None:
    """The default maps' ``_typeFilter`` (about 8,000 characters) is too long for a URL: it
    is POSTed as ``Parameters``, HAPI applies it, and an unmapped code stays on the server."""
    base_url, ids = cohort
    tokens = code_tokens(default_code_maps().variables.entries)
    type_filter = code_filter(tokens)
    assert type_filter is not None
    assert len(type_filter) > MAX_QUERY_CHARS
    unmapped = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://hospital.example/local", "code": "unmapped-1"}]},
        "subject": {"reference": f"Patient/{ids[0]}"},
        "effectiveDateTime": (AS_OF - timedelta(hours=2)).isoformat(),
        "valueQuantity": {"value": 1.0, "unit": "1"},
    }
    with FhirClient(base_url) as client:
        created = client.create(unmapped)
        try:
            everything = [
                o
                for p in ids[:2]
                for o in client.search("Observation", {"subject": f"Patient/{p}"})
            ]
            request = ExportRequest(("Observation",), _group_id(), type_filters=(type_filter,))
            report, _, bulk = _export(base_url, [request], tmp_path)
        finally:
            client.send("DELETE", f"Observation/{created['id']}", label="test cleanup").close()

    def mapped(o: dict[str, Any]) -> bool:
        codings = o["code"]["coding"] + [
            c for k in o.get("component", []) for c in k["code"]["coding"]
        ]
        return any(f"{c.get('system')}|{c.get('code')}" in tokens for c in codings)

    assert (bulk.stats.post_kickoffs, bulk.stats.type_filter_refused) == (1, 0)
    got = _ids(NdjsonFhirSource(tmp_path), "Observation")
    assert created["id"] in {o["id"] for o in everything}
    assert created["id"] not in got
    assert got == {o["id"] for o in everything if mapped(o)}
    assert report.lines_by_type() == {"Observation": len(got)}
