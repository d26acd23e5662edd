"""The exceptions of dipro-fhir, chosen by what the caller does next.

One root, :class:`DiproFhirError`. A caller retries :class:`SourceUnavailable`, stops on
:class:`AuthError` and :class:`ModelContractError`, records :class:`ResourceNotFound` against
the patient and goes on, and treats :class:`PublishConflict` as "somebody else wrote it".
Data problems inside one patient's resources are not raised at all: they become
:class:`~dipro_fhir.core.timeline.MappingIssue` records on the timeline.
"""

from __future__ import annotations

from typing import Any


class DiproFhirError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(DiproFhirError):
    """A setting is missing or invalid; fix the configuration and run again."""


class SourceUnavailable(DiproFhirError):
    """A server could not answer now (timeout, 429, 5xx, reset). Retrying may help.

    Attributes:
        status: The HTTP status, or ``None`` for a connection-level failure.
        outcome: The server's ``OperationOutcome`` as raw JSON, when it sent one.
    """

    def __init__(
        self, message: str, *, status: int | None = None, outcome: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class AuthError(DiproFhirError):
    """Credentials were refused (401/403) or could not be obtained. Do not retry."""

    def __init__(
        self, message: str, *, status: int | None = None, outcome: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class ResourceNotFound(DiproFhirError):
    """The server says the resource (or image) does not exist (404/410)."""

    def __init__(
        self, message: str, *, status: int | None = None, outcome: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class RequestRejected(DiproFhirError):
    """The server refused the request as invalid (400/422 and other 4xx). Do not retry."""

    def __init__(
        self, message: str, *, status: int | None = None, outcome: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class PublishConflict(DiproFhirError):
    """A write collided with another writer (409/412)."""

    def __init__(
        self, message: str, *, status: int | None = None, outcome: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class ServerProtocolError(DiproFhirError):
    """A server's answer breaks the protocol the same way on every try: a ``next`` link that
    repeats (a paging loop), leads to another server, or pages without end. A data problem of
    that server, not an outage: retrying (tonight or tomorrow) gives the same answer."""


class InvalidResource(DiproFhirError):
    """A resource (FHIR JSON or DICOM object) could not be parsed or validated."""


class ModelContractError(DiproFhirError):
    """Inputs or a checkpoint do not match what the model expects. Stop the run."""


class TrainingError(DiproFhirError):
    """Training did not produce a checkpoint worth saving (too few patients, no task with
    labels, or a network that did not learn); nothing was saved."""
