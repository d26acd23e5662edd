"""Download a completed ``$export``'s NDJSON files into a folder the NDJSON source reads.

Each file streams to ``<name>.part``. A download that breaks (connection reset, a body
shorter than its ``Content-Length``, 429/5xx after the client's retries) is taken up again:
with ``Range: bytes=<have>-`` when the server advertised ``Accept-Ranges: bytes`` (a 206
appends), otherwise from the start. Only a verified file is renamed to its final name
(``Observation.<job><n>.ndjson``, which :class:`~dipro_fhir.fhir.ndjson_source.NdjsonFhirSource`
reads): it ends with a newline, every line is a JSON object of the manifest's type, and the
line count equals the manifest's ``count`` when the server gave one. So a truncated file is
never read. The access token goes along only when the manifest's ``requiresAccessToken``
says so (a signed file-store URL must not see it).

Error files (``OperationOutcome`` NDJSON) go to ``_errors/`` and are summarised by issue
severity and code (their diagnostics may name patients and are not logged).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dipro_fhir.core.errors import SourceUnavailable
from dipro_fhir.fhir.bulk import BulkExportError, ExportManifest, OutputFile
from dipro_fhir.fhir.bulk_requests import NDJSON
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.exchange import TRANSIENT_ERRORS
from dipro_fhir.fhir.retry import RETRYABLE_STATUSES
from dipro_fhir.fhir.status import error_for_status

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
ERRORS_DIR = "_errors"


@dataclass(frozen=True, slots=True)
class FileResult:
    """One downloaded, verified file."""

    type: str
    name: str
    lines: int
    bytes: int
    attempts: int


@dataclass
class DownloadReport:
    """What an export left in the folder: files per type, error issues, retries."""

    files: list[FileResult] = field(default_factory=list)
    error_issues: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    def lines_by_type(self) -> dict[str, int]:
        """Resources per type."""
        found: Counter[str] = Counter()
        for f in self.files:
            found[f.type] += f.lines
        return dict(sorted(found.items()))

    @property
    def bytes(self) -> int:
        """Bytes downloaded and kept."""
        return sum(f.bytes for f in self.files)


def download_export(
    client: FhirClient,
    manifests: Sequence[ExportManifest],
    directory: str | Path,
    *,
    max_attempts: int = 5,
) -> DownloadReport:
    """Download every output and error file of ``manifests`` into ``directory`` (created).

    Args:
        client: The FHIR client (session, auth, retries) of the exporting server.
        manifests: The completed jobs' manifests; job ``i``'s files get the prefix ``j<i>``.
        directory: The folder; files already there from an earlier try are replaced.
        max_attempts: Tries per file (a resumed or restarted download is one more).

    Raises:
        BulkExportError: A file stayed broken or failed verification.
    """
    out = Path(directory)
    (out / ERRORS_DIR).mkdir(parents=True, exist_ok=True)
    report = DownloadReport()
    for j, manifest in enumerate(manifests):
        token = manifest.requires_access_token
        for n, item in enumerate(manifest.output):
            target = out / f"{item.type}.j{j}-{n:04d}.ndjson"
            result = _download(client, item, target, token, max_attempts, report)
            report.files.append(result)
        for n, item in enumerate(manifest.error):
            target = out / ERRORS_DIR / f"{item.type}.j{j}-{n:04d}.ndjson"
            _download(client, item, target, token, max_attempts, report)
            report.error_issues.update(_issue_codes(target))
    log.info("bulk download: %s, %d bytes, error issues %s",
             report.lines_by_type(), report.bytes, dict(report.error_issues))  # fmt: skip
    return report


def _download(
    client: FhirClient,
    item: OutputFile,
    target: Path,
    token: bool,
    max_attempts: int,
    report: DownloadReport,
) -> FileResult:
    part = target.with_name(target.name + ".part")
    part.unlink(missing_ok=True)
    ranges = False
    for attempt in range(1, max_attempts + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Accept": NDJSON}
        if have and ranges:
            headers["Range"] = f"bytes={have}-"
        report.requests += 1
        try:
            complete, ranges = _fetch_into(client, item, part, headers, token, have)
        except (SourceUnavailable, *TRANSIENT_ERRORS) as exc:
            log.warning("bulk download of a %s file broke (%s), attempt %d",
                        item.type, type(exc).__name__, attempt)  # fmt: skip
            continue
        if complete:
            try:
                lines = verify_ndjson(part, item)
            except BulkExportError as exc:  # cut short without the transport noticing
                log.warning("bulk download: %s; starting the file again", exc)
                part.unlink(missing_ok=True)
                continue
            size = part.stat().st_size
            os.replace(part, target)
            return FileResult(item.type, target.name, lines, size, attempt)
    part.unlink(missing_ok=True)
    raise BulkExportError(f"a {item.type} file could not be downloaded in {max_attempts} tries")


def _fetch_into(
    client: FhirClient,
    item: OutputFile,
    part: Path,
    headers: dict[str, str],
    token: bool,
    have: int,
) -> tuple[bool, bool]:
    """One GET of a file into ``part``; returns (complete, server takes ranges).

    Raises:
        SourceUnavailable: Throttled or unavailable after retries, or the body broke off.
    """
    response = client.send(
        "GET", item.url, label=f"$export file {item.type}", headers=headers, stream=True,
        authenticated=token,
    )  # fmt: skip
    with response:
        status = response.status_code
        ranges = response.headers.get("Accept-Ranges", "").lower() == "bytes"
        if status in RETRYABLE_STATUSES:
            raise SourceUnavailable(f"$export file: HTTP {status}", status=status)
        if status == 416:  # our Range lies past the end: start over
            part.unlink(missing_ok=True)
            return False, False
        if status not in (200, 206):
            raise error_for_status(status, None, action=f"GET $export file {item.type}")
        append = status == 206 and "Range" in headers
        declared = response.headers.get("Content-Length")
        written = 0
        with part.open("ab" if append else "wb") as handle:
            for chunk in response.iter_content(CHUNK_BYTES):
                handle.write(chunk)
                written += len(chunk)
        if declared is not None and written < int(declared):
            raise SourceUnavailable("$export file: body shorter than Content-Length")
        return True, ranges


def verify_ndjson(path: Path, item: OutputFile) -> int:
    """Count the lines of a downloaded file and check each is a JSON object of its type.

    Raises:
        BulkExportError: The file is cut short, holds a line of another type or no JSON,
            or its line count differs from the manifest's ``count``.
    """
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        for line in handle:
            last = line[-1:]
            if not line.strip():
                continue
            try:
                resource = json.loads(line)
            except ValueError:
                raise BulkExportError(f"a {item.type} file has a line that is not JSON") from None
            if not isinstance(resource, dict) or resource.get("resourceType") != item.type:
                raise BulkExportError(f"a {item.type} file holds a line of another type")
            lines += 1
    if last != b"\n" and lines and item.count is None:
        log.info("a %s file does not end with a newline (its last line parsed)", item.type)
    if item.count is not None and lines != item.count:
        raise BulkExportError(f"a {item.type} file has {lines} lines, the manifest {item.count}")
    return lines


def _issue_codes(path: Path) -> Counter[str]:
    codes: Counter[str] = Counter()
    with path.open("rb") as handle:
        for line in handle:
            try:
                outcome = json.loads(line)
            except ValueError:
                codes["unreadable"] += 1
                continue
            for issue in outcome.get("issue") or [] if isinstance(outcome, dict) else []:
                if isinstance(issue, dict):
                    codes[f"{issue.get('severity', '?')}:{issue.get('code', '?')}"] += 1
    return codes


__all__ = ["DownloadReport", "FileResult", "download_export", "verify_ndjson"]
