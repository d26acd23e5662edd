"""FHIR Bulk Data ``$export`` client (Bulk Data Access IG v2, https://hl7.org/fhir/uv/bulkdata/).

The asynchronous request pattern: a kick-off ``GET [base]/Group/[id]/$export`` (or the
system-level ``[base]/$export``) with ``Prefer: respond-async`` answers 202 and a
``Content-Location`` status URL; polling it answers 202 (with ``Retry-After`` and
``X-Progress``) until the job completes (200 and a JSON manifest naming the NDJSON output and
error files) or fails (4xx/5xx with an OperationOutcome). A job that fails, times out or is
abandoned is cancelled with ``DELETE`` on the status URL; so is a finished one once its files
are down (the IG's "client is done" signal, so the server can free them).

``_typeFilter`` is optional in the IG: when the server refuses it (400/405/422 at kick-off)
the job is asked again without it, and the readers filter themselves (they always re-check).
A query too long for a URL (the default code maps' filter is about 8,000 characters) is sent
as a ``POST`` kick-off with a ``Parameters`` body, which the IG allows and HAPI accepts.
What to export (the night's jobs and their kick-off parameters) is
:mod:`dipro_fhir.fhir.bulk_requests`; downloads are :mod:`dipro_fhir.fhir.bulk_files`. Only
job-level facts are logged (types, counts, seconds): status URLs and manifests may carry
Group ids, never patient data, and are not logged either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from dipro_fhir.core.errors import DiproFhirError, SourceUnavailable
from dipro_fhir.fhir.bulk_requests import ExportRequest
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.retry import RETRYABLE_STATUSES, parse_retry_after
from dipro_fhir.fhir.status import describe_outcome

log = logging.getLogger(__name__)

#: Longest kick-off query sent in a URL; longer ones are POSTed (servers cap URLs near 8 KB).
MAX_QUERY_CHARS = 6000
PREFER_ASYNC = {"Prefer": "respond-async"}


class BulkExportError(DiproFhirError):
    """The server refused or failed an export job, or it did not finish in time."""


@dataclass(frozen=True, slots=True)
class ExportJob:
    """A kicked-off job: where to poll it, and whether ``_typeFilter`` was accepted."""

    status_url: str
    types: tuple[str, ...]
    type_filter_used: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for XCom and trigger kwargs)."""
        return {
            "status_url": self.status_url,
            "types": list(self.types),
            "type_filter_used": self.type_filter_used,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportJob:
        """Read :meth:`to_json`'s dict."""
        return cls(str(data["status_url"]), tuple(data["types"]), bool(data["type_filter_used"]))


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file of a completed export's manifest (``output`` or ``error``)."""

    type: str
    url: str
    count: int | None = None


@dataclass(frozen=True, slots=True)
class ExportManifest:
    """The complete-status manifest of an export job."""

    transaction_time: str
    requires_access_token: bool
    output: tuple[OutputFile, ...]
    error: tuple[OutputFile, ...] = ()

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ExportManifest:
        """Read a manifest body.

        Raises:
            BulkExportError: It is not a Bulk Data manifest.
        """
        if not isinstance(body.get("output"), list) or "transactionTime" not in body:
            raise BulkExportError("the export status answer is not a Bulk Data manifest")

        def files(items: object) -> tuple[OutputFile, ...]:
            found = []
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and item.get("type") and item.get("url"):
                    count = item.get("count")
                    found.append(
                        OutputFile(
                            str(item["type"]),
                            str(item["url"]),
                            count if isinstance(count, int) else None,
                        )
                    )
            return tuple(found)

        return cls(
            transaction_time=str(body["transactionTime"]),
            requires_access_token=bool(body.get("requiresAccessToken", True)),
            output=files(body["output"]),
            error=files(body.get("error")),
        )


@dataclass(frozen=True, slots=True)
class PollResult:
    """One poll: still running (``manifest`` None, wait ``retry_after_s``) or complete."""

    manifest: ExportManifest | None
    retry_after_s: float = 0.0
    progress: str | None = None
    unreachable: bool = False


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How long to wait between polls and for a whole job.

    Without ``Retry-After`` the delay starts at ``initial_s`` and doubles up to ``max_s``;
    a server's ``Retry-After`` is honoured but capped at ``max_s``. A status endpoint that
    stays unreachable (after the client's own retries) for ``unreachable_s`` fails the
    export long before ``timeout_s``: a server that is down does not hold a run for hours.
    """

    initial_s: float = 1.0
    max_s: float = 60.0
    timeout_s: float = 6 * 3600.0
    unreachable_s: float = 1800.0

    def delay_s(self, polls: int, retry_after_s: float | None) -> float:
        """Seconds before the next poll after ``polls`` polls (1 for the first)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.1), self.max_s)
        return min(self.initial_s * 2.0 ** (polls - 1), self.max_s)


@dataclass
class ExportStats:
    """What the jobs cost: requests by kind (for the benchmark and the run summary)."""

    kickoffs: int = 0
    post_kickoffs: int = 0
    polls: int = 0
    cancels: int = 0
    type_filter_refused: int = 0
    waited_s: float = 0.0
    notes: list[str] = field(default_factory=list)


class BulkExportClient:
    """Kick off, poll and cancel ``$export`` jobs over a :class:`FhirClient` (its session,
    auth, including SMART backend services, and retries).

    Args:
        client: The FHIR REST client of the server.
        policy: Poll delays and the job timeout.
        sleep: How to wait (tests and the trigger pass their own).
    """

    def __init__(
        self,
        client: FhirClient,
        policy: PollPolicy = PollPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.policy = policy
        self.sleep = sleep
        self.stats = ExportStats()

    def kick_off(self, request: ExportRequest) -> ExportJob:
        """Start a job; retry once without ``_typeFilter`` when the server refuses it.

        Raises:
            BulkExportError: The server refused the kick-off (after the fallback).
        """
        response = self._kick(request, with_filters=True)
        used = bool(request.type_filters)
        if used and response.status_code in (400, 405, 422):
            self.stats.type_filter_refused += 1
            log.warning("bulk export: _typeFilter refused (%d); asking without it",
                        response.status_code)  # fmt: skip
            response = self._kick(request, with_filters=False)
            used = False
        location = response.headers.get("Content-Location")
        if response.status_code != 202 or not location:
            raise BulkExportError(
                f"$export kick-off answered {response.status_code}: {_outcome(response)}"
            )
        log.info("bulk export started: types=%s since=%s type_filter=%s",
                 ",".join(request.types), request.since is not None, used)  # fmt: skip
        return ExportJob(location, request.types, used)

    def poll(self, job: ExportJob) -> PollResult:
        """Ask once how the job stands. A throttled or unavailable server (after the
        client's own retries) counts as "still running": waiting loses nothing.

        Raises:
            BulkExportError: The job failed (the server answered an error for it).
        """
        self.stats.polls += 1
        try:
            response = self.client.send("GET", job.status_url, label="$export status")
        except SourceUnavailable:
            return PollResult(None, self.policy.max_s, "unreachable", unreachable=True)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        status = response.status_code
        if status == 202 or status in RETRYABLE_STATUSES:
            wait = retry_after if retry_after is not None else self.policy.initial_s
            return PollResult(None, wait, response.headers.get("X-Progress"))
        if status == 200:
            return PollResult(ExportManifest.from_json(_json(response)))
        raise BulkExportError(f"$export job failed ({status}): {_outcome(response)}")

    def wait(self, jobs: Sequence[ExportJob]) -> list[ExportManifest]:
        """Poll every job until all complete; cancel them all on failure or timeout.

        Raises:
            BulkExportError: A job failed, the policy's timeout passed, or the server stayed
                unreachable for the policy's ``unreachable_s`` (all jobs cancelled).
        """
        started = time.monotonic()
        done: dict[int, ExportManifest] = {}
        polls = 0
        unreachable_since: float | None = None
        try:
            while len(done) < len(jobs):
                polls += 1
                delays = []
                unreachable = False
                for i, job in enumerate(jobs):
                    if i in done:
                        continue
                    result = self.poll(job)
                    unreachable |= result.unreachable
                    if result.manifest is not None:
                        done[i] = result.manifest
                    else:
                        delays.append(result.retry_after_s)
                if len(done) == len(jobs):
                    break
                now = time.monotonic()
                unreachable_since = track_unreachable(
                    unreachable_since, unreachable, now, self.policy
                )
                if now - started > self.policy.timeout_s:
                    raise BulkExportError(f"$export not done in {self.policy.timeout_s:.0f} s")
                self.sleep(self.policy.delay_s(polls, max(delays)))
        except BaseException:
            self.cancel_all(jobs)
            raise
        finally:
            self.stats.waited_s += time.monotonic() - started
        return [done[i] for i in range(len(jobs))]

    def cancel(self, job: ExportJob) -> bool:
        """``DELETE`` the job (cancel it, or release its files). Never raises.

        Returns:
            Whether the server accepted (2xx).
        """
        self.stats.cancels += 1
        try:
            response = self.client.send("DELETE", job.status_url, label="$export cancel")
        except (SourceUnavailable, requests.RequestException) as exc:
            log.warning("bulk export: cancel failed: %s", type(exc).__name__)
            return False
        response.close()
        return 200 <= response.status_code < 300

    def cancel_all(self, jobs: Sequence[ExportJob]) -> None:
        """:meth:`cancel` each job."""
        for job in jobs:
            self.cancel(job)

    def _kick(self, request: ExportRequest, *, with_filters: bool) -> requests.Response:
        """GET, or POST with a ``Parameters`` body when the query is too long for a URL (a
        long ``_typeFilter``). A repeated kick-off at worst starts a job that is never
        polled, so a POST kick-off is retried like a GET."""
        self.stats.kickoffs += 1
        params = request.params(with_filters=with_filters)
        if len(urlencode(params)) <= MAX_QUERY_CHARS:
            return self.client.send("GET", request.path, label="$export kick-off",
                                    headers=PREFER_ASYNC, params=params)  # fmt: skip
        self.stats.post_kickoffs += 1
        return self.client.send("POST", request.path, label="$export kick-off",
                                headers=PREFER_ASYNC, retryable=True,
                                body=request.parameters(with_filters=with_filters))  # fmt: skip


def track_unreachable(
    since: float | None, unreachable: bool, now: float, policy: PollPolicy
) -> float | None:
    """Since when the status endpoint has been unreachable (None while it answers), given
    the previous value and whether this round of polls reached it.

    Raises:
        BulkExportError: It has been unreachable for longer than ``policy.unreachable_s``.
    """
    if not unreachable:
        return None
    since = now if since is None else since
    if now - since > policy.unreachable_s:
        raise BulkExportError(
            f"$export status unreachable for {now - since:.0f} s "
            f"(limit {policy.unreachable_s:.0f} s): is the FHIR server down?"
        )
    return since


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise BulkExportError("the export status answer is not JSON") from exc
    if not isinstance(body, dict):
        raise BulkExportError("the export status answer is not a JSON object")
    return body


def _outcome(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{len(response.content)} bytes of {response.headers.get('Content-Type')}"
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return describe_outcome(body)
    return "no OperationOutcome"


__all__ = [
    "BulkExportClient",
    "BulkExportError",
    "ExportJob",
    "ExportManifest",
    "OutputFile",
    "PollPolicy",
    "PollResult",
]
