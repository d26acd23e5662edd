"""write_scores against the NDJSON sink (the embedded demo): idempotent, complete, labelled."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dipro_fhir.writeback.assessment import AssessmentOptions
from dipro_fhir.writeback.sinks import NdjsonResultSink
from dipro_fhir.writeback.write import write_scores

from .scores import MODEL, cohort_scores


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rerun_to_ndjson_rewrites_nothing(tmp_path: Path) -> None:
    sink = NdjsonResultSink(tmp_path)
    scores = cohort_scores(5)
    first = write_scores(sink, scores, MODEL)
    assert (first.written, first.unchanged, first.failures) == (15, 0, ())
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.ndjson")}
    second = write_scores(sink, scores, MODEL)
    assert (second.written, second.unchanged) == (0, 15)
    assert second.resource_ids == first.resource_ids
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.ndjson")} == before
    assert set(before) == {
        "RiskAssessment.ndjson",
        "Device.ndjson",
        "DocumentReference.ndjson",
        "Provenance.ndjson",
    }
    assert len(_lines(sink.path("Provenance"))) == 1


def test_new_model_version_adds_resources_and_keeps_old(tmp_path: Path) -> None:
    sink = NdjsonResultSink(tmp_path)
    write_scores(sink, cohort_scores(3), MODEL)
    old = sink.read_all("RiskAssessment")
    v2 = dataclasses.replace(MODEL, version="2.0.0")
    report = write_scores(sink, cohort_scores(3, model=v2), v2)
    assert report.written == 9
    now = sink.read_all("RiskAssessment")
    assert len(now) == 18
    assert all(now[k] == v for k, v in old.items())
    assert len(sink.read_all("Device")) == 2


def test_transaction_size_splits_provenance_per_chunk(tmp_path: Path) -> None:
    sink = NdjsonResultSink(tmp_path)
    report = write_scores(sink, cohort_scores(4), MODEL, AssessmentOptions(transaction_size=5))
    assert report.written == 12
    provenances = list(sink.read_all("Provenance").values())
    assert sorted(len(p["target"]) for p in provenances) == [2, 5, 5]
