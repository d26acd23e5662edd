"""The one place where an HTTP status becomes one of our exceptions.

The exception is chosen by what the caller does next (see :mod:`dipro_fhir.core.errors`), and the
server's ``OperationOutcome`` travels on it. Messages hold the method, resource type, status
and the outcome's issue codes only: ``diagnostics`` text and URLs can echo search
parameters, which carry patient ids, so they stay out of messages (and so out of logs).
"""

from __future__ import annotations

from typing import Any

from dipro_fhir.core.errors import (
    AuthError,
    DiproFhirError,
    PublishConflict,
    RequestRejected,
    ResourceNotFound,
    SourceUnavailable,
)


def error_for_status(
    status: int, outcome: dict[str, Any] | None, *, action: str, attempts: int = 1
) -> DiproFhirError:
    """Return the exception for a non-2xx FHIR answer.

    Args:
        status: The HTTP status code.
        outcome: The ``OperationOutcome`` the server sent, when the body was one.
        action: What was attempted, without PHI, e.g. ``"GET Observation"``.
        attempts: How many tries were made (shown in the message).

    Returns:
        ``AuthError`` (401/403), ``ResourceNotFound`` (404/410), ``PublishConflict``
        (409/412), ``SourceUnavailable`` (429, 5xx and anything unexpected) or
        ``RequestRejected`` (400, 422 and every other 4xx).
    """
    message = f"{action}: HTTP {status}{describe_outcome(outcome)}"
    if attempts > 1:
        message += f" after {attempts} attempts"
    if status in (401, 403):
        return AuthError(message, status=status, outcome=outcome)
    if status in (404, 410):
        return ResourceNotFound(message, status=status, outcome=outcome)
    if status in (409, 412):
        return PublishConflict(message, status=status, outcome=outcome)
    if status == 429 or status >= 500 or status < 400:
        return SourceUnavailable(message, status=status, outcome=outcome)
    return RequestRejected(message, status=status, outcome=outcome)


def describe_outcome(outcome: dict[str, Any] | None) -> str:
    """Summarise an OperationOutcome as its issue severities and codes (no diagnostics)."""
    if not outcome:
        return ""
    issues = outcome.get("issue")
    if not isinstance(issues, list):
        return ""
    parts = [
        f"{issue.get('severity', '?')}:{issue.get('code', '?')}"
        for issue in issues[:5]
        if isinstance(issue, dict)
    ]
    return f" (OperationOutcome {', '.join(parts)})" if parts else ""
