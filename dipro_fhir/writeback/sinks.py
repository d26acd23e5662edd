"""Where results go: a FHIR server or NDJSON files, behind one :class:`ResultSink` protocol.

A sink is deliberately simple: it reads back what exists (:meth:`ResultSink.existing`) and
writes resources at their client-assigned ids (:meth:`ResultSink.write`), one outcome per
resource. Deciding *what* to write (skip identical content, Provenance for what changed)
is :func:`dipro_fhir.writeback.write.write_scores`'s job, so both sinks behave the same.

:class:`FhirResultSink` writes one transaction Bundle of ``PUT Type/id`` entries (FHIR R4
3.1.0.11 "transaction"; update-as-create with client ids, never conditional create, which
races). When the server refuses the transaction as a whole (4xx), it falls back to one
``PUT`` per entry so that one bad entry fails alone. :class:`NdjsonResultSink` keeps one
``<Type>.ndjson`` file per resource type and rewrites it by id (atomic replace under a file
lock), so it is idempotent too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dipro_fhir.core.errors import (
    DiproFhirError,
    InvalidResource,
    PublishConflict,
    RequestRejected,
    ResourceNotFound,
    SourceUnavailable,
)
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.status import describe_outcome

_LOG = logging.getLogger(__name__)
READ_BATCH = 100
WRITE_ATTEMPTS = 4
_SERVER_META = ("versionId", "lastUpdated", "source", "author", "project", "compartment")


def same_content(stored: Mapping[str, Any] | None, ours: Mapping[str, Any]) -> bool:
    """Whether ``stored`` already says what ``ours`` says (server-set ``meta`` ignored)."""
    if stored is None:
        return False
    meta = {k: v for k, v in (stored.get("meta") or {}).items() if k not in _SERVER_META}
    theirs = {k: v for k, v in stored.items() if k != "meta"}
    if meta:
        theirs["meta"] = meta
    mine = dict(ours)
    if ours["resourceType"] == "Provenance":  # ``recorded`` is the time of writing
        theirs.pop("recorded", None)
        mine.pop("recorded", None)
    return theirs == mine


TARGET_BATCH = 40  # references per Provenance search: about 2 kB of query string


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """What happened to one resource handed to a sink.

    Attributes:
        reference: ``Type/id``.
        ok: Whether the server (or file) now holds the resource.
        reason: A stable code when not ok: ``rejected``, ``conflict``,
            ``source-unavailable``, ``invalid-response``.
        detail: A short explanation without patient data (status codes, outcome codes).
        retriable: Whether writing again later may succeed.
    """

    reference: str
    ok: bool
    reason: str = ""
    detail: str = ""
    retriable: bool = False


class ResultSink(Protocol):
    """A place results are written to, idempotently, at client-assigned ids."""

    def existing(self, resource_type: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Return the stored resources among ``ids``, by id (absent ids are left out)."""
        ...

    def write(self, resources: Sequence[Mapping[str, Any]]) -> list[EntryOutcome]:
        """Write resources (as one unit where the sink can), one outcome per resource."""
        ...

    def provenance_targets(self, references: Sequence[str]) -> set[str]:
        """Return those of ``references`` (``Type/id``) that some stored Provenance targets."""
        ...


def _reference(resource: Mapping[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _relative(reference: str) -> str:
    """``[base/]Type/id[/_history/v]`` -> ``Type/id`` (servers may add base or version)."""
    parts = reference.split("/_history/", 1)[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


def _failure(reference: str, exc: DiproFhirError) -> EntryOutcome:
    status = getattr(exc, "status", None)
    detail = f"status {status}: {describe_outcome(getattr(exc, 'outcome', None))}"
    if isinstance(exc, SourceUnavailable):
        return EntryOutcome(reference, False, "source-unavailable", detail, retriable=True)
    if isinstance(exc, PublishConflict):
        return EntryOutcome(reference, False, "conflict", detail, retriable=True)
    return EntryOutcome(reference, False, "rejected", detail, retriable=False)


class FhirResultSink:
    """Writes to a FHIR R4 server through :class:`~dipro_fhir.fhir.client.FhirClient`.

    Args:
        client: The FHIR client (its retry policy covers transient failures).
    """

    def __init__(self, client: FhirClient) -> None:
        self.client = client

    def existing(self, resource_type: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Read ``Type/id`` for each id in batch Bundles of ``GET`` entries (404: absent).

        A batch of reads (FHIR R4 3.1.0.11.1) costs the server one lookup per id, where a
        ``_id=a,b,...`` search may scan; both are standard.
        """
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), READ_BATCH):
            part = unique[start : start + READ_BATCH]
            bundle = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {"request": {"method": "GET", "url": f"{resource_type}/{i}"}} for i in part
                ],
            }
            response = self.client.batch(bundle, idempotent=True)
            for entry in response.get("entry") or []:
                status = str((entry.get("response") or {}).get("status", ""))
                resource = entry.get("resource")
                if status[:1] == "2" and isinstance(resource, dict):
                    found[str(resource.get("id"))] = resource
                elif status[:3] not in ("404", "410"):
                    raise SourceUnavailable(f"batch read of {resource_type} answered {status}")
        return found

    def write(self, resources: Sequence[Mapping[str, Any]]) -> list[EntryOutcome]:
        """One transaction of PUTs; per-entry PUTs when the server refuses the whole.

        A single resource is a plain ``PUT Type/id`` (no Bundle needed).
        """
        if not resources:
            return []
        if len(resources) == 1:
            return [self._put_one(resources[0])]
        done: list[EntryOutcome] = []
        pending = list(resources)
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            outcomes = self._transaction(pending, last=attempt == WRITE_ATTEMPTS)
            if outcomes is not None:
                return done + outcomes
            # The answer was lost (timeout, reset, cut body): the transaction may have been
            # applied. Read back first; send again only what is not there yet, so a retry
            # never writes a needless version of identical content.
            time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            try:
                stored = self._stored(pending)
            except DiproFhirError:
                continue
            there = [r for r in pending if same_content(stored.get(_reference(r)), r)]
            done += [EntryOutcome(_reference(r), True) for r in there]
            pending = [r for r in pending if r not in there]
            if not pending:
                return done
        raise AssertionError("unreachable")  # pragma: no cover

    def _stored(self, resources: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        by_type: dict[str, list[str]] = {}
        for r in resources:
            by_type.setdefault(str(r["resourceType"]), []).append(str(r["id"]))
        for resource_type, ids in by_type.items():
            for rid, resource in self.existing(resource_type, ids).items():
                found[f"{resource_type}/{rid}"] = resource
        return found

    def _transaction(
        self, resources: Sequence[Mapping[str, Any]], *, last: bool
    ) -> list[EntryOutcome] | None:
        """One transaction without blind retries; ``None`` when its answer was lost."""
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": dict(r),
                    "request": {"method": "PUT", "url": _reference(r)},
                }
                for r in resources
            ],
        }
        references = [_reference(r) for r in resources]
        try:
            response = self.client.transaction(bundle, idempotent=False)
        except PublishConflict as exc:
            # Another writer holds one of these ids right now (HAPI 409, HAPI-0550/0825):
            # the caller re-reads and retries the whole unit.
            return [_failure(ref, exc) for ref in references]
        except (RequestRejected, ResourceNotFound, InvalidResource) as exc:
            _LOG.warning(
                "transaction of %d entries refused (%s); writing entries one by one",
                len(resources),
                type(exc).__name__,
            )
            return [self._put_one(r) for r in resources]
        except SourceUnavailable as exc:
            return [_failure(ref, exc) for ref in references] if last else None
        return _transaction_outcomes(references, response)

    def provenance_targets(self, references: Sequence[str]) -> set[str]:
        """Search ``Provenance?target=a,b,...`` in groups, reading only ``target``.

        A search, not a batch entry, so that ``Cache-Control: no-cache`` reaches HAPI's
        search cache (an entry inside a batch carries no headers).
        """
        wanted = set(references)
        found: set[str] = set()
        unique = sorted(wanted)
        for start in range(0, len(unique), TARGET_BATCH):
            part = unique[start : start + TARGET_BATCH]
            params = {"target": ",".join(part), "_elements": "target"}
            for provenance in self.client.search("Provenance", params):
                for target in provenance.get("target") or []:
                    reference = target.get("reference") if isinstance(target, dict) else None
                    if isinstance(reference, str) and _relative(reference) in wanted:
                        found.add(_relative(reference))
        return found

    def _put_one(self, resource: Mapping[str, Any]) -> EntryOutcome:
        reference = _reference(resource)
        try:
            self.client.put(dict(resource))
        except (RequestRejected, PublishConflict, ResourceNotFound, SourceUnavailable) as exc:
            return _failure(reference, exc)
        except InvalidResource as exc:
            return EntryOutcome(reference, False, "invalid-response", str(exc), retriable=True)
        return EntryOutcome(reference, True)


def _transaction_outcomes(
    references: Sequence[str], response: Mapping[str, Any]
) -> list[EntryOutcome]:
    entries = response.get("entry") or []
    if len(entries) != len(references):
        detail = f"{len(entries)} response entries for {len(references)} requests"
        return [EntryOutcome(r, False, "invalid-response", detail, True) for r in references]
    outcomes = []
    for reference, entry in zip(references, entries, strict=True):
        status = str((entry.get("response") or {}).get("status", ""))
        if status[:1] == "2":
            outcomes.append(EntryOutcome(reference, True))
        else:
            outcomes.append(EntryOutcome(reference, False, "rejected", f"status {status}"))
    return outcomes


class NdjsonResultSink:
    """Writes FHIR NDJSON files, one ``<Type>.ndjson`` per resource type, rewritten by id.

    Used by the embedded demo. Writers of the same folder are serialised with a file lock;
    each file is replaced atomically, so a reader never sees half a file.

    Args:
        directory: The folder (created when missing).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, resource_type: str) -> Path:
        """Return the NDJSON file of a resource type."""
        return self.directory / f"{resource_type}.ndjson"

    def existing(self, resource_type: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Read the type's file and return the resources among ``ids``."""
        wanted = set(ids)
        return {k: v for k, v in self.read_all(resource_type).items() if k in wanted}

    def read_all(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Return every resource of a type in the folder, by id."""
        path = self.path(resource_type)
        if not path.exists():
            return {}
        found: dict[str, dict[str, Any]] = {}
        with path.open(encoding="utf-8") as stream:
            for line in stream:
                if line.strip():
                    resource = json.loads(line)
                    found[resource["id"]] = resource
        return found

    def write(self, resources: Sequence[Mapping[str, Any]]) -> list[EntryOutcome]:
        """Merge the resources into their files by id, under the folder's lock."""
        by_type: dict[str, list[Mapping[str, Any]]] = {}
        for resource in resources:
            by_type.setdefault(str(resource["resourceType"]), []).append(resource)
        with self._locked():
            for resource_type, group in by_type.items():
                merged = self.read_all(resource_type)
                merged.update({str(r["id"]): dict(r) for r in group})
                self._replace(resource_type, merged)
        return [EntryOutcome(_reference(r), True) for r in resources]

    def provenance_targets(self, references: Sequence[str]) -> set[str]:
        """Return the references among ``references`` that a stored Provenance targets."""
        wanted = set(references)
        return {
            t["reference"]
            for p in self.read_all("Provenance").values()
            for t in p.get("target") or []
            if t.get("reference") in wanted
        }

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _replace(self, resource_type: str, resources: Mapping[str, Mapping[str, Any]]) -> None:
        handle, temp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            for resource_id in sorted(resources):
                stream.write(json.dumps(resources[resource_id], separators=(",", ":")) + "\n")
        os.replace(temp, self.path(resource_type))
