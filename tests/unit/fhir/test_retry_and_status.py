"""Retry timing and the HTTP-status-to-exception mapping, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dipro_fhir.core.errors import (
    AuthError,
    PublishConflict,
    RequestRejected,
    ResourceNotFound,
    SourceUnavailable,
)
from dipro_fhir.fhir import RetryPolicy, bundle_is_idempotent, error_for_status, next_link
from dipro_fhir.fhir.retry import parse_retry_after


def test_retry_after_seconds_are_read_as_seconds() -> None:
    assert parse_retry_after("7") == 7.0


def test_retry_after_http_date_is_seconds_until_that_date() -> None:
    now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)


def test_retry_after_in_the_past_or_garbage_never_goes_negative() -> None:
    now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_server_retry_after_is_capped() -> None:
    policy = RetryPolicy(max_retry_after_s=5.0)
    assert policy.delay_s(1, "3600") == 5.0
    assert policy.delay_s(1, "2") == 2.0


@given(st.integers(min_value=1, max_value=30), st.floats(min_value=0.0, max_value=1.0))
def test_backoff_grows_exponentially_within_jitter_and_cap(retry: int, jitter: float) -> None:
    policy = RetryPolicy(backoff_s=0.1, max_backoff_s=3.0, jitter=jitter)
    base = min(3.0, 0.1 * 2 ** (retry - 1))
    delay = policy.delay_s(retry)
    assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2.0)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, RequestRejected),
        (401, AuthError),
        (403, AuthError),
        (404, ResourceNotFound),
        (405, RequestRejected),
        (409, PublishConflict),
        (410, ResourceNotFound),
        (412, PublishConflict),
        (422, RequestRejected),
        (429, SourceUnavailable),
        (500, SourceUnavailable),
        (503, SourceUnavailable),
    ],
)
def test_each_status_maps_to_what_the_caller_does_next(status: int, error: type) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
    exc = error_for_status(status, outcome, action="GET Observation")
    assert type(exc) is error
    assert exc.status == status  # type: ignore[attr-defined]
    assert exc.outcome is outcome  # type: ignore[attr-defined]


def test_error_message_keeps_issue_codes_but_not_diagnostics() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "patient=SECRET-MRN"}],
    }
    message = str(error_for_status(400, outcome, action="GET Observation", attempts=2))
    assert "error:invalid" in message
    assert "SECRET-MRN" not in message
    assert "after 2 attempts" in message


def test_next_link_is_found_by_relation_only() -> None:
    bundle = {"link": [{"relation": "self", "url": "a"}, {"relation": "next", "url": "b?x"}]}
    assert next_link(bundle) == "b?x"
    assert next_link({"link": [{"relation": "self", "url": "a"}]}) is None


def test_only_put_get_delete_of_type_id_bundles_count_as_idempotent() -> None:
    def bundle(*requests: tuple[str, str]) -> dict[str, object]:
        return {"entry": [{"request": {"method": m, "url": u}} for m, u in requests]}

    assert bundle_is_idempotent(bundle(("PUT", "Patient/a"), ("GET", "Patient?name=x")))
    assert bundle_is_idempotent(bundle(("DELETE", "Observation/o1")))
    assert not bundle_is_idempotent(bundle(("POST", "Patient")))
    assert not bundle_is_idempotent(bundle(("PUT", "Patient?identifier=x")))
    assert not bundle_is_idempotent({"entry": [{"resource": {}}]})
